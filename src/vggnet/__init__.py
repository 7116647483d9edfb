"""vggnet: the VGG family (Simonyan & Zisserman, 2014) with its training recipe and test protocols.

    >>> import vggnet
    >>> model = vggnet.build_model("D", num_classes=10, batch_norm=True, head="gap")
"""

from vggnet.errors import ConfigError, DataError, TrainingError, VGGNetError, WeightsError
from vggnet.model.architectures import list_models
from vggnet.model.init import initialise, pre_initialise
from vggnet.model.vgg import VGG, build_model, convert_head, count_macs, count_params
from vggnet.weights.native import load_weights, save_weights
from vggnet.weights.torchvision import from_torchvision, to_torchvision

__version__ = "0.1.0"

__all__ = [
    "VGG", "build_model", "list_models", "convert_head", "count_macs", "count_params",
    "initialise", "pre_initialise", "save_weights", "load_weights", "from_torchvision", "to_torchvision",
    "VGGNetError", "ConfigError", "DataError", "WeightsError", "TrainingError",
]
