"""The data stage: dataset registry (`sources`), batched augmentation (`augment`), loaders (`loaders`)."""

from vggnet.data.augment import Stats, compute_stats, convert_channels, normalize
from vggnet.data.formats import load_image
from vggnet.data.loaders import Loader, iter_raw, make_loader
from vggnet.data.sources import Dataset, Split, get, names, register
from vggnet.data import boxes, localisation  # noqa: F401  (register ilsvrc-loc, voc-loc, fashion-mnist-loc)

__all__ = ["Dataset", "Loader", "Split", "Stats", "compute_stats", "convert_channels", "get", "iter_raw",
           "load_image", "make_loader", "names", "normalize", "register"]
