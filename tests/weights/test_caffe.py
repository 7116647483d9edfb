"""Caffe .caffemodel files, written here byte by byte in Caffe's protobuf wire format (no schema
shared with the reader), in both the V1 ``layers`` field the released VGG files use and the
new ``layer`` field; the outputs are checked against a forward pass computed from the blobs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vggnet.cli import main
from vggnet.errors import WeightsError
from vggnet.weights import preprocess
from vggnet.weights.formats import load_pretrained

pytest.importorskip("google.protobuf")

MEAN_BGR = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
V1 = {"Data": 5, "Convolution": 4, "ReLU": 18, "Pooling": 17, "InnerProduct": 14, "Dropout": 6, "Softmax": 20}


def varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


# A message is a list of pieces, bytes and float32 arrays, written to the file in order: a
# full-size fc6 (411 MB) is never copied into one bytes object.
def size(pieces: list) -> int:
    return sum(p.nbytes if isinstance(p, np.ndarray) else len(p) for p in pieces)


def field(number: int, payload: bytes | int | list) -> list:
    if isinstance(payload, int):  # wire type 0, varint
        return [varint(number << 3) + varint(payload)]
    pieces = payload if isinstance(payload, list) else [payload]
    return [varint(number << 3 | 2) + varint(size(pieces)), *pieces]  # wire type 2, length-delimited


def join(pieces: list) -> bytes:
    return b"".join(p.tobytes() if isinstance(p, np.ndarray) else p for p in pieces)


def blob(array: np.ndarray, *, v1: bool) -> list:
    data = field(5, [np.ascontiguousarray(array, "<f4")])  # packed floats
    if v1:  # num, channels, height, width: InnerProduct weights 1 x 1 x out x in, biases 1 x 1 x 1 x n
        dims = (1,) * (4 - array.ndim) + array.shape
        return [b for i, d in enumerate(dims) for b in field(i + 1, d)] + data
    return field(7, field(1, b"".join(varint(d) for d in array.shape))) + data


def layer(name: str, kind: str, blobs=(), *, v1: bool, bottom="x", top="x") -> list:
    if v1:  # V1LayerParameter: bottom 2, top 3, name 4, type 5 (enum), blobs 6, convolution_param 10
        body = field(2, bottom.encode()) + field(3, top.encode()) + field(4, name.encode()) + field(5, V1[kind])
        body += [p for b in blobs for p in field(6, blob(b, v1=True))]
        if kind == "Convolution":
            body += field(10, join(field(1, len(blobs[1])) + field(3, 1) + field(4, 3)))  # num_output, pad, kernel
        return field(2, body)
    body = field(1, name.encode()) + field(2, kind.encode()) + field(3, bottom.encode()) + field(4, top.encode())
    body += [p for b in blobs for p in field(7, blob(b, v1=False))]
    if kind == "Convolution":
        body += field(106, join(field(1, len(blobs[1]))))  # convolution_param.num_output
    return field(100, body)


def caffe_net(blocks, *, width=8, hidden=512, classes=5, seed=0):
    """{name: (weight, bias)} of a VGG in Caffe's layout (convs out, in, kh, kw; fc out, in)."""
    rng = np.random.default_rng(seed)
    net, channels = {}, 3
    for b, convs in enumerate(blocks, start=1):
        out = width * min(2 ** (b - 1), 8)
        for m in range(1, convs + 1):
            net[f"conv{b}_{m}"] = (rng.normal(0, (2 / (9 * channels)) ** 0.5, (out, channels, 3, 3)),
                                   rng.normal(0, 0.01, out))
            channels = out
    for name, fan_in, fan_out in (("fc6", channels * 49, hidden), ("fc7", hidden, hidden), ("fc8", hidden, classes)):
        net[name] = (rng.normal(0, (2 / fan_in) ** 0.5, (fan_out, fan_in)), rng.normal(0, 0.01, fan_out))
    return {k: (w.astype(np.float32), b.astype(np.float32)) for k, (w, b) in net.items()}


def write_caffemodel(net, path, *, v1: bool) -> None:
    """A deploy-style net as the released files are: input, data, conv/relu, pools, fc, dropout,
    prob. ``net`` is a dict, or an iterable of (name, (weight, bias)) made one layer at a time."""
    with open(path, "wb") as out:
        def write(pieces: list) -> None:
            for piece in pieces:
                out.write(memoryview(piece).cast("B") if isinstance(piece, np.ndarray) else piece)

        write(field(1, b"VGG_ILSVRC_test") + field(3, b"data") + [b for d in (10, 3, 224, 224) for b in field(4, d)])
        write(layer("data", "Data", v1=v1) if v1 else [])
        block = 1
        for name, pair in (net.items() if isinstance(net, dict) else net):
            if name.startswith("conv"):
                if int(name[4]) != block:
                    write(layer(f"pool{block}", "Pooling", v1=v1))
                    block += 1
                write(layer(name, "Convolution", pair, v1=v1) + layer(f"relu{name[4:]}", "ReLU", v1=v1))
            else:
                if name == "fc6":
                    write(layer(f"pool{block}", "Pooling", v1=v1))
                write(layer(name, "InnerProduct", pair, v1=v1))
                if name != "fc8":
                    write(layer(f"relu{name[2:]}", "ReLU", v1=v1) + layer(f"drop{name[2:]}", "Dropout", v1=v1))
        write(layer("prob", "Softmax", v1=v1))


def caffe_forward(net, x_bgr):
    """The Caffe net's forward pass from its blobs: conv (pad 1) + ReLU, a 2x2 max-pool where a
    block ends, fc6 on pool5 flattened in (c, h, w) order, fc7, fc8."""
    x, block = x_bgr, 1
    for name, (w, b) in (net.items() if isinstance(net, dict) else net):
        w, b = torch.from_numpy(w), torch.from_numpy(b)
        if name.startswith("conv"):
            if int(name[4]) != block:
                x, block = F.max_pool2d(x, 2), block + 1
            x = F.relu(F.conv2d(x, w, b, padding=1))
        else:
            if name == "fc6":
                x = F.max_pool2d(x, 2).flatten(1)
            x = x @ w.T + b
            x = F.relu(x) if name != "fc8" else x
    return x


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("v1", [True, False], ids=["V1 layers", "layer"])
def test_caffemodel_matches_the_caffe_forward_pass(tmp_path, images, v1):
    net = caffe_net([1, 1, 2, 2, 2])  # config A, reduced width
    write_caffemodel(net, tmp_path / "vgg.caffemodel", v1=v1)
    model = load_pretrained(tmp_path / "vgg.caffemodel").eval()
    assert model.config["name"] == "A" and model.config["num_classes"] == 5
    pre = model.metadata["preprocessing"]
    assert pre["channel_order"] == "BGR" and pre["pixel_scale"] == 255
    assert pre["stats"]["mean"] == [103.939, 116.779, 123.68]
    expected = caffe_forward(net, images.float().flip(1) - MEAN_BGR)  # Caffe's input: BGR, 0-255, mean pixel
    with torch.no_grad():
        got = model(preprocess.prepare(images, pre))
        folded = model(preprocess.prepare(images, preprocess.canonical(model).metadata["preprocessing"]))
    assert (got - expected).abs().max() < 1e-3 * expected.abs().max()
    assert (folded - expected).abs().max() < 1e-3 * expected.abs().max()  # flipped to RGB, 0-1 units


def test_d_at_one_eighth_width_and_its_fc6_reshape(tmp_path):
    net = caffe_net([2, 2, 3, 3, 3], width=64 // 8, classes=10, seed=1)  # D's layers, width 1/8
    write_caffemodel(net, tmp_path / "VGG_ILSVRC_16_layers.caffemodel", v1=True)
    model = load_pretrained(tmp_path / "VGG_ILSVRC_16_layers.caffemodel").eval()
    assert model.config["name"] == "D" and model.config["width"] == 0.125
    fc6 = torch.from_numpy(net["fc6"][0])
    assert fc6.shape == (512, 64 * 7 * 7) and torch.equal(model.classifier[0].weight, fc6)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3)) * 50
    with torch.no_grad():
        got = model(x)
    expected = caffe_forward(net, x)
    assert (got - expected).abs().max() < 1e-3 * expected.abs().max()


# fc6 rows that each read one pool5 cell (c, h, w): their outputs are that cell, which pins the
# reshape of fc6's 25088 inputs to pool5's (c, h, w) order.
PROBES = [(0, 0, 0), (5, 2, 3), (511, 5, 6), (100, 0, 6), (300, 6, 0)]


def vgg16_layers(seed=16):
    """The released VGG-16's layers at their real shapes, made one at a time and the same on every
    call: conv1_1 ... conv5_3 at full width, fc6 4096 x 25088, fc7 4096 x 4096, fc8 1000 x 4096."""
    channels = 3
    for b, convs in enumerate([2, 2, 3, 3, 3], start=1):
        out = 64 * min(2 ** (b - 1), 8)
        for m in range(1, convs + 1):
            rng = np.random.default_rng([seed, b, m])
            weight = rng.standard_normal((out, channels, 3, 3), dtype=np.float32)
            weight *= (2 / (9 * channels)) ** 0.5
            yield f"conv{b}_{m}", (weight, rng.standard_normal(out, dtype=np.float32) * 0.01)
            channels = out
    for name, fan_in, fan_out in (("fc6", 512 * 7 * 7, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000)):
        rng = np.random.default_rng([seed, int(name[2:])])
        weight = rng.standard_normal((fan_out, fan_in), dtype=np.float32)
        weight *= (2 / fan_in) ** 0.5
        if name == "fc6":
            for row, (c, h, w) in enumerate(PROBES):
                weight[row] = 0
                weight[row, c * 49 + h * 7 + w] = 1
        yield name, (weight, rng.standard_normal(fan_out, dtype=np.float32) * 0.01)


@pytest.mark.slow  # a 553 MB file written and read: ~30 s, ~2.5 GB of memory (the reader: 2x the file)
def test_full_size_vgg16_caffemodel(tmp_path):
    """The real VGG-16 shapes in the released file's V1 layout (fc6 as a 1 x 1 x 4096 x 25088 blob)."""
    path = tmp_path / "VGG_ILSVRC_16_layers.caffemodel"
    write_caffemodel(vgg16_layers(), path, v1=True)
    assert path.stat().st_size > 138_357_544 * 4  # every weight of VGG-16, as float32
    model = load_pretrained(path).eval()
    assert {k: model.config[k] for k in ("name", "width", "num_classes", "batch_norm", "head")} == {
        "name": "D", "width": 1.0, "num_classes": 1000, "batch_norm": False, "head": "fc"}
    assert model.classifier[0].weight.shape == (4096, 25088) and len(model.metadata["classes"]) == 1000
    image = torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        out = model.features_at(preprocess.prepare(image, model.metadata["preprocessing"]), ["pool5", "fc6", "fc8"])
    pool5, fc6 = out["pool5"][0], out["fc6"][0]
    assert pool5.shape == (512, 7, 7)
    cells = torch.stack([pool5[c, h, w] for c, h, w in PROBES])
    assert (cells > 0).all() and len(set(cells.tolist())) == len(PROBES)  # probes that tell cells apart
    assert torch.allclose(fc6[: len(PROBES)], cells + model.classifier[0].bias[: len(PROBES)], rtol=1e-6, atol=0)
    expected = caffe_forward(vgg16_layers(), image.float().flip(1) - MEAN_BGR)  # BGR, 0-255, mean pixel
    assert (out["fc8"] - expected).abs().max() < 1e-4 * expected.abs().max()


def test_truncated_or_foreign_caffemodel_is_one_clear_error(tmp_path):
    write_caffemodel(caffe_net([1, 1, 2, 2, 2]), tmp_path / "full.caffemodel", v1=True)
    data = (tmp_path / "full.caffemodel").read_bytes()
    for cut in (len(data) // 2, len(data) - 100):
        (tmp_path / "cut.caffemodel").write_bytes(data[:cut])
        with pytest.raises(WeightsError, match=r"caffe file .*(truncated|no fc)"):
            load_pretrained(tmp_path / "cut.caffemodel")
    (tmp_path / "other.caffemodel").write_bytes(join(layer("conv1", "Convolution",
                                                           (np.zeros((4, 3, 7, 7)), np.zeros(4)), v1=False)))
    with pytest.raises(WeightsError, match=r"no conv1_1 .*\(found: conv1\)"):
        load_pretrained(tmp_path / "other.caffemodel")


def test_bad_caffemodels_on_the_command_line_are_one_line_exit_2(tmp_path, capsys):
    write_caffemodel(caffe_net([1, 1, 2, 2, 2]), tmp_path / "full.caffemodel", v1=True)
    data = (tmp_path / "full.caffemodel").read_bytes()
    (tmp_path / "cut.caffemodel").write_bytes(data[: len(data) // 3])
    (tmp_path / "html.caffemodel").write_bytes(b"<html><body>404 Not Found</body></html>")  # a failed download
    from vggnet.model.vgg import build_model
    from vggnet.weights.formats import save_as

    save_as(build_model("A", num_classes=3, width=0.125, seed=0), tmp_path / "ours.caffemodel")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    expected = {"cut": r"caffe file .*cut.caffemodel does not parse as a NetParameter \(.*\); it is truncated or not "
                       r"a .caffemodel, download it again",
                "html": r"caffe file .*html.caffemodel does not parse as a NetParameter",
                "ours": r".*ours.caffemodel: named .caffemodel but not a Caffe NetParameter \(detected: safetensors "
                        r"content\); accepted: .*Caffe .caffemodel"}
    for name, pattern in expected.items():
        assert main(["predict", str(tmp_path / f"{name}.caffemodel"), str(tmp_path / "a.png")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.fullmatch(f"vggnet predict: error: {pattern}.*\n", err), err


def test_predict_takes_a_caffemodel(tmp_path, capsys):
    write_caffemodel(caffe_net([1, 1, 2, 2, 2], classes=10), tmp_path / "vgg.caffemodel", v1=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 260, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "vgg.caffemodel"), str(tmp_path / "a.png"), "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["predictions"][0]["top"]
    assert len(top) == 5 and abs(sum(t["probability"] for t in top) - 1) < 1e-4
    assert main(["predict", str(tmp_path / "missing.caffemodel"), str(tmp_path / "a.png")]) == 2
    assert "not found" in capsys.readouterr().err



def test_export_of_caffe_weights_says_the_input_they_expect(tmp_path, capsys):
    write_caffemodel(caffe_net([1, 1, 2, 2, 2]), tmp_path / "vgg.caffemodel", v1=True)
    assert main(["export", str(tmp_path / "vgg.caffemodel"), "--out", str(tmp_path / "vgg.pth")]) == 0
    out = capsys.readouterr().out
    assert "input BGR, 0-255, minus mean [103.939, 116.779, 123.68] (not torchvision's usual" in out
    assert main(["export", str(tmp_path / "vgg.caffemodel"), "--out", str(tmp_path / "vgg.h5")]) == 0
    assert "usual" not in capsys.readouterr().out  # Keras' preprocess_input is Caffe's


@pytest.mark.slow  # ~10 s on 2 shared cores
def test_eval_takes_a_caffemodel(tmp_path):
    write_caffemodel(caffe_net([1, 1, 2, 2, 2], classes=10), tmp_path / "vgg.caffemodel", v1=True)
    assert main(["eval", str(tmp_path / "vgg.caffemodel"), "--data", "synthetic", "--limit", "4", "--protocol",
                 "centre", "--out", str(tmp_path / "eval.json"), "--json"]) == 0
    assert "centre" in json.loads((tmp_path / "eval.json").read_text())["protocols"]
