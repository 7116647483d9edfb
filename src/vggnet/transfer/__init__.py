"""Reusing VGG weights (issue 8): fine-tuning, the paper's Appendix B features with a linear
probe, and ONNX / TorchScript export. The weights formats themselves live in vggnet.weights."""
