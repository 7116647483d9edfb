"""Reusing VGG weights (issue 8): other frameworks' files in and out, fine-tuning, the paper's
Appendix B features with a linear probe, and ONNX / TorchScript export."""

from vggnet.transfer.formats import load_pretrained, save_as
from vggnet.transfer.preprocess import prepare

__all__ = ["load_pretrained", "save_as", "prepare"]
