"""safetensors with config metadata; torchvision round trips; nothing unsafe is unpickled."""

import os

import pytest
import torch
import torchvision

import vggnet
from vggnet.errors import WeightsError
from vggnet.weights.native import load_state_dict, read_metadata, save_weights


def test_safetensors_round_trip_rebuilds_the_model(tmp_path):
    model = vggnet.build_model("C", num_classes=3, batch_norm=True, head="gap", width=0.125, in_channels=1).eval()
    path = vggnet.save_weights(model, tmp_path / "m.safetensors", classes=["a", "b", "c"])
    loaded = vggnet.load_weights(path).eval()
    assert loaded.config == model.config
    assert loaded.metadata["classes"] == ["a", "b", "c"]
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert read_metadata(path)["model"]["name"] == "C"


def test_loading_into_another_config_names_both(tmp_path):
    path = vggnet.save_weights(vggnet.build_model("A", num_classes=3, width=0.125), tmp_path / "a.safetensors")
    with pytest.raises(WeightsError, match="name=A.*name=D"):
        vggnet.load_weights(path, vggnet.build_model("D", num_classes=3, width=0.125))


SLOW = pytest.mark.slow  # full-size torchvision models: ~5-10 s each on 2 cores


@pytest.mark.parametrize("tv_name", ["vgg11", "vgg16_bn", *(pytest.param(n, marks=SLOW) for n in
                                                           ("vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg19_bn"))])
def test_torchvision_round_trip_same_logits(tv_name):
    tv = getattr(torchvision.models, tv_name)(weights=None, num_classes=10).eval()
    ours = vggnet.from_torchvision(tv.state_dict()).eval()
    assert ours.config["batch_norm"] == tv_name.endswith("_bn")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ref = tv(x)
        assert (ours(x) - ref).abs().max() <= 1e-5
        dense = vggnet.from_torchvision(tv.state_dict(), head="conv").eval()
        assert (dense(x) - ref).abs().max() <= 1e-5
    back = torchvision.models.get_model(tv_name, weights=None, num_classes=10).eval()
    back.load_state_dict(vggnet.to_torchvision(dense))
    with torch.no_grad():
        assert (back(x) - ref).abs().max() <= 1e-5


def test_to_torchvision_refuses_configs_it_lacks():
    with pytest.raises(WeightsError, match="torchvision cannot hold this VGG-C .*torchvision holds A, B, D, E"):
        vggnet.to_torchvision(vggnet.build_model("C", width=0.125))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def test_crafted_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"features.0.weight": _Exploit()}, path)
    with pytest.raises(WeightsError, match="refused"):
        load_state_dict(path)
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_refused_and_empty_torch_files_are_one_line_without_torch_warnings(tmp_path):
    """The CLI prints vggnet's line alone: no torch warning before it (seen: two lines cut mid-word)."""
    import pickle
    import subprocess
    import sys

    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "code.pt").write_bytes(pickle.dumps({"w": subprocess.Popen}))
    (tmp_path / "x.png").write_bytes(b"")
    for name, match in (("empty.pt", "is empty (0 bytes)"), ("code.pt", "refused to load")):
        proc = subprocess.run([sys.executable, "-W", "default", "-m", "vggnet", "predict", str(tmp_path / name),
                               str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and match in proc.stderr, proc.stderr


def _saved(tmp_path):
    from vggnet.model.vgg import build_model

    model = build_model("A", num_classes=3, width=0.0625, head="gap", seed=0)
    return model, save_weights(model, tmp_path / "m.safetensors", classes=["a", "b", "c"])


def test_a_flipped_bit_in_model_safetensors_is_an_error_not_another_model(tmp_path):
    from vggnet.weights.native import load_weights

    model, path = _saved(tmp_path)
    assert load_weights(path).config == model.config  # the checksum of a good file matches
    data = bytearray(path.read_bytes())
    data[len(data) - 100] ^= 0x01  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="is damaged: its tensors do not match the checksum") as info:
        load_weights(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("meta", ["{not json", "[1, 2]", '{"model": 5}'])
def test_damaged_vggnet_metadata_is_one_line(tmp_path, meta):
    from safetensors.torch import save_file

    from vggnet.weights.native import load_weights

    save_file({"w": torch.zeros(2)}, tmp_path / "m.safetensors", metadata={"vggnet": meta})
    with pytest.raises(WeightsError, match="metadata is not"):
        load_weights(tmp_path / "m.safetensors")


@pytest.mark.parametrize("name,content,match", [
    ("empty.safetensors", b"", "is empty \\(0 bytes\\)"),
    ("garbage.pt", b"\x80\x02" + bytes(range(256)) * 4, "not a plain tensor file: damaged or another format"),
    ("half.pt", None, "not a complete torch file"),
])
def test_damaged_weights_files_say_what_is_wrong_in_a_few_words(tmp_path, name, content, match):
    path = tmp_path / name
    if content is None:
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:900])
    else:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=match) as info:
        load_state_dict(path)
    message = str(info.value)
    assert "\n" not in message and "PyTorch 2.6" not in message and len(message) < 300, message


@pytest.mark.parametrize("change", [{"width": 2000}, {"width": "wide"}, {"num_classes": -3}, {"name": "F"}])
def test_metadata_that_does_not_describe_the_tensors_is_refused_before_allocating(tmp_path, change):
    """A crafted config (width 2000 would be a 1 TB allocation) is compared on the meta device first."""
    import json

    from safetensors.torch import load_file, save_file

    from vggnet.weights.native import load_weights

    _, path = _saved(tmp_path)
    meta = read_metadata(path)
    meta["model"].update(change)
    meta.pop("sha256")
    save_file(load_file(path), tmp_path / "crafted.safetensors", metadata={"vggnet": json.dumps(meta)})
    with pytest.raises(WeightsError, match="crafted.safetensors: its metadata") as info:
        load_weights(tmp_path / "crafted.safetensors")
    assert "\n" not in str(info.value)
