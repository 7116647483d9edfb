"""Every weights file format in one place (docs/transfer.md has the table):

- native.py: our safetensors (config and preprocessing in the metadata), safe torch-file reading
- torchvision.py, timm.py, keras.py: the other frameworks' layouts, in and out
- preprocess.py: the preprocessing a set of weights expects, as data that travels with them
- formats.py: one entry point, ``load_pretrained(spec)`` / ``save_as(model, path, fmt)``
"""

from vggnet.weights.formats import FORMATS, load_pretrained, save_as
from vggnet.weights.native import (
           load_state_dict,
           load_weights,
           read_metadata,
           save_weights,
)
from vggnet.weights.preprocess import prepare
from vggnet.weights.torchvision import from_torchvision, to_torchvision

__all__ = ["FORMATS", "load_pretrained", "save_as", "load_state_dict", "load_weights", "read_metadata",
           "save_weights", "prepare", "from_torchvision", "to_torchvision"]
