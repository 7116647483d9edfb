"""The paper's own release: Caffe ``.caffemodel`` files (``VGG_ILSVRC_16_layers.caffemodel``,
``VGG_ILSVRC_19_layers.caffemodel``) in.

A caffemodel is a binary ``NetParameter`` protobuf. The part of Caffe's ``caffe.proto`` that
holds weights is built here with ``descriptor_pb2`` (no protoc step): the layers in the new
``layer`` field (``LayerParameter``, type a string) or the old V1 ``layers`` field
(``V1LayerParameter``, type an enum; the released VGG files use it), each with its ``blobs``
(``BlobProto``: the data, and the shape as ``shape.dim`` or the V1 ``num/channels/height/width``).
Field numbers are Caffe's, so any caffemodel parses; fields not declared here are skipped.

Layers conv1_1 ... conv5_4, fc6, fc7, fc8 map to the VGG of the same config. Caffe's blobs are
already in torch's layout: conv (out, in, kh, kw), InnerProduct (out, in) with fc6's inputs in
the (c, h, w) order of pool5. The first conv stays in Caffe's BGR order and the preprocessing is
recorded (BGR, 0-255, mean pixel B 103.939, G 116.779, R 123.68); ``preprocess.canonical``
folds it into the weights for RGB pipelines.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from vggnet.errors import WeightsError
from vggnet.model.vgg import VGG
from vggnet.weights import preprocess
from vggnet.weights.layout import vgg_from_arrays
from vggnet.weights.preprocess import imagenet_metadata

_CONV = re.compile(r"^conv(\d+)_(\d+)$")
# V1LayerParameter.LayerType values of the layers that carry VGG weights (caffe.proto).
V1_CONVOLUTION, V1_INNER_PRODUCT = 4, 14

# (message, [(field name, number, type, label, message type)]) from caffe.proto.
_OPT, _REP = 1, 3
_INT32, _INT64, _FLOAT, _DOUBLE, _STRING, _MESSAGE = 5, 3, 2, 1, 9, 11
_SCHEMA: list[tuple[str, list[tuple[str, int, int, int, str | None]]]] = [
    ("BlobShape", [("dim", 1, _INT64, _REP, None)]),
    ("BlobProto", [("num", 1, _INT32, _OPT, None), ("channels", 2, _INT32, _OPT, None),
                   ("height", 3, _INT32, _OPT, None), ("width", 4, _INT32, _OPT, None),
                   ("data", 5, _FLOAT, _REP, None), ("shape", 7, _MESSAGE, _OPT, "BlobShape"),
                   ("double_data", 8, _DOUBLE, _REP, None)]),
    ("LayerParameter", [("name", 1, _STRING, _OPT, None), ("type", 2, _STRING, _OPT, None),
                        ("blobs", 7, _MESSAGE, _REP, "BlobProto")]),
    ("V1LayerParameter", [("name", 4, _STRING, _OPT, None), ("type", 5, _INT32, _OPT, None),
                          ("blobs", 6, _MESSAGE, _REP, "BlobProto")]),
    ("NetParameter", [("name", 1, _STRING, _OPT, None), ("layers", 2, _MESSAGE, _REP, "V1LayerParameter"),
                      ("layer", 100, _MESSAGE, _REP, "LayerParameter")]),
]


@cache
def net_parameter() -> type:
    """The NetParameter message class (the weights-holding subset of caffe.proto, package caffe).
    V1's ``type`` is declared int32: the same varint on the wire as Caffe's enum."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="vggnet_caffe.proto", package="caffe", syntax="proto2")
    for name, fields in _SCHEMA:
        message = proto.message_type.add(name=name)
        for field, number, kind, label, type_name in fields:
            entry = message.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                entry.type_name = f".caffe.{type_name}"
            if label == _REP and kind in (_INT64, _FLOAT, _DOUBLE):
                entry.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


def _blob(blob: Any, where: str) -> np.ndarray:
    data = np.asarray(blob.data if len(blob.data) else blob.double_data, dtype=np.float32)
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:  # V1: num, channels, height, width (InnerProduct weights are 1 x 1 x out x in)
        shape = tuple(int(d) for d in (blob.num, blob.channels, blob.height, blob.width))
    if int(np.prod(shape)) != data.size:
        raise WeightsError(f"caffe: blob of {where} has shape {shape} but {data.size} values; "
                           "the file is truncated or corrupt, download it again")
    return data.reshape(shape)


def read_layers(path: str | Path) -> dict[str, tuple[str, list[np.ndarray]]]:
    """{layer name: (type, [blobs])} of the layers that hold weights, from either field."""
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    net = net_parameter()()
    try:
        net.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise WeightsError(f"caffe file {path} does not parse as a NetParameter ({exc}); it is truncated or "
                           "not a .caffemodel, download it again") from None
    v1_types = {V1_CONVOLUTION: "Convolution", V1_INNER_PRODUCT: "InnerProduct"}
    layers = {}
    for layer in list(net.layer) + list(net.layers):
        kind = layer.type if isinstance(layer.type, str) else v1_types.get(layer.type, f"V1 type {layer.type}")
        if len(layer.blobs):
            layers[layer.name] = (kind, [_blob(b, layer.name) for b in layer.blobs])
    return layers


def read_caffe(path: str | Path) -> VGG:
    """A VGG (fc head) from the paper's Caffe release, BGR input and its preprocessing recorded."""
    path = Path(path)
    layers = read_layers(path)
    convs = sorted(((int(m[1]), int(m[2])), name) for name in layers if (m := _CONV.match(name)))
    if not convs:
        found = ", ".join(list(layers)[:5]) or "no layers with weights"
        raise WeightsError(f"caffe file {path} has no conv1_1 ... conv5_N layers (found: {found}); "
                           "not a VGG caffemodel")
    missing = [n for n in ("fc6", "fc7", "fc8") if n not in layers]
    if missing:
        raise WeightsError(f"caffe file {path} has no {', '.join(missing)} layer; the file is truncated or "
                           "not a full VGG caffemodel")
    names = [n for _, n in convs] + ["fc6", "fc7", "fc8"]
    for name in names:
        kind, blobs = layers[name]
        if len(blobs) != 2:
            raise WeightsError(f"caffe file {path}: {name} ({kind}) has {len(blobs)} blobs, not a weight and a "
                               "bias; not a VGG caffemodel")
    source = f"caffe:{path.name}"
    pairs = {n: (w.reshape(w.shape[-2:]) if w.ndim == 4 and n.startswith("fc") else w, b.reshape(-1))
             for n, (w, b) in ((n, layers[n][1]) for n in names)}
    model = vgg_from_arrays([pairs[n] for _, n in convs], [pairs[n] for n in ("fc6", "fc7", "fc8")], source=source)
    model.metadata = imagenet_metadata(model, source=source)
    model.metadata["preprocessing"] = preprocess.caffe()
    return model
