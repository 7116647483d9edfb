"""Every config key refuses at least one bad value at load time, with a line naming the key."""

import pytest

from vggnet import config
from vggnet.errors import ConfigError

# one or more hostile values per key (YAML text, as --set parses it); a key missing here fails
# test_every_key_has_a_bad_value, so a new key cannot slip through unchecked
BAD: dict[str, list[str]] = {
    "model.name": ["F", "[A]"],
    "model.batch_norm": ["maybe"],
    "model.head": ["mlp"],
    "model.init": ["uniform", "paper"],
    "model.width": ["0", "-1", ".inf"],
    "model.dropout": ["1", "-0.1"],
    "model.pre_initialise": ["''"],
    "model.box_head": ["box", "[pcr]"],
    "data.name": ["''"],
    "data.dir": ["''"],
    "data.download": ["[1]"],
    "data.val_fraction": ["1", "-0.5"],
    "data.subset": ["0"],
    "data.image_size": ["0", "2.5"],
    "data.scale": ["[0]", "[1.5]", "[16]", "[32, 64, 128]"],
    "data.test_scale": ["-1"],
    "data.pad": ["-1"],
    "data.flip": ["sometimes"],
    "data.colour_shift": ["-0.1", ".nan"],
    "data.erase": ["1.5", "-0.1"],
    "data.normalize": ["zscore", "mean"],
    "data.workers": ["-1"],
    "data.train_per_class": ["0"],
    "data.clutter": ["2"],
    "data.num_classes": ["0", "1"],
    "data.num_train": ["0"],
    "data.num_test": ["0"],
    "data.max_pixels": ["0", "-1"],
    "train.epochs": ["0", ".inf", "1e23"],
    "train.max_steps": ["0", "-5"],
    "train.batch_size": ["0", "-32"],
    "train.optimizer": ["rmsprop"],
    "train.lr": ["0", "-0.1", ".nan", ".inf", "fast"],
    "train.momentum": ["-0.9", "1", "1.5"],
    "train.weight_decay": ["-5e-4"],
    "train.nesterov": ["nope"],
    "train.schedule": ["linear"],
    "train.warmup_epochs": ["-1"],
    "train.plateau_patience": ["0"],
    "train.plateau_max_decreases": ["-1"],
    "train.step_size": ["0"],
    "train.label_smoothing": ["2", "1", "-0.1"],
    "train.grad_clip": ["-1", "0"],
    "train.early_stop_patience": ["0"],
    "train.amp": ["bf16"],
    "train.channels_last": ["{a: 1}"],
    "train.compile": ["null"],
    "train.checkpoint_minutes": ["-1"],
    "train.on_nonfinite": ["ignore"],
    "train.health_every": ["-1"],
    "train.progress": ["[]"],
    "train.force": ["please"],
    "train.checkpoint_activations": ["[1]"],
    "eval.protocols": ["[centre, ten_crop]", "[]"],
    "eval.scales": ["[0]", "[a]"],
    "eval.limit": ["0"],
    "eval.batch_size": ["0"],
    "loc.classifier": ["''"],
    "loc.finetune": ["conv"],
    "loc.merge_iou": ["0", "1", "-0.5"],
    "loc.samples": ["-1"],
    "seed": ["-1", "1e23", "9223372036854775808", "1.5"],
    "device": ["gpu", "cuda:x", "tpu"],
    "deterministic": ["[true]"],
    "name": ["''", "a/../../etc", "/abs", "..", "run\\x"],
    "init_from": ["''"],
}


def test_every_key_has_a_bad_value_and_a_check():
    keys = set(config.flatten(config.RunConfig()))
    assert keys == set(BAD), f"keys without a hostile case: {keys - set(BAD)}; stale: {set(BAD) - keys}"
    assert keys == set(config.CHECKS), f"keys without a check: {keys - set(config.CHECKS)}"


CASES = [(key, value) for key, values in BAD.items() for value in values]


@pytest.mark.parametrize("key,value", CASES, ids=[f"{k}={v}" for k, v in CASES])
def test_bad_value_is_one_line_naming_the_key(key, value):
    with pytest.raises(ConfigError) as info:
        config.load(None, [f"{key}={value}"])
    message = str(info.value)
    assert "\n" not in message
    assert key in message or (key == "model.name" and "unknown VGG config" in message), message


@pytest.mark.parametrize("key,value", CASES[:12], ids=[f"yaml-{k}" for k, _ in CASES[:12]])
def test_bad_value_in_yaml_too(tmp_path, key, value):
    section, _, leaf = key.rpartition(".")
    text = f"{section}:\n  {leaf}: {value}\n" if section else f"{leaf}: {value}\n"
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=f"{leaf}|unknown VGG config"):
        config.load(tmp_path / "c.yaml")


@pytest.mark.parametrize("content,match", [
    (b"train:\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr'"),
    (b"train:\n  lr: 0.1\ntrain:\n  epochs: 2\n", "duplicate key 'train'"),
    (bytes(range(256)) * 4, "not a UTF-8 text file"),
    (b"\x00\x01\x02binary", "not valid YAML|must be"),
    (b"- a\n- b\n", "must be a YAML mapping"),
    (b"train: [1, 2\n", "not valid YAML"),
])
def test_bad_yaml_files(tmp_path, content, match):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        config.load(path)


def test_good_values_still_load():
    cfg = config.load(None, ["seed=9223372036854775807", "device=cuda:1", "train.momentum=0", "train.grad_clip=1",
                             "data.scale=[256, 512]", "data.image_size=224", "eval.scales=[224, 256]"])
    assert cfg.seed == 2**63 - 1 and cfg.device == "cuda:1" and cfg.data.scale == [256, 512]


@pytest.mark.parametrize("value", ["[0.1", "!!python/name:os.system", "*a", "{a: 1"])
def test_a_set_value_that_is_not_yaml_is_one_line(value):
    with pytest.raises(ConfigError, match=r"--set train\.lr=.*not valid YAML.*quote") as info:
        config.load(None, [f"train.lr={value}"])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("override,allowed", [
    ("seed=1e23", "a whole number (at least 0 and less than 9223372036854775808)"),
    ("train.epochs=.inf", "a whole number (at least 1 and at most 100000)"),
    ("train.lr=.nan", "a finite number (more than 0)"),
    ("train.optimizer=", "one of sgd, adam"),
    ("data.scale=[1.5]", "a list of whole numbers (each at least 1 and at most 8192) or null"),
    ("train.amp=bf16", "true or false"),
])
def test_the_line_says_what_is_allowed(override, allowed):
    with pytest.raises(ConfigError) as info:
        config.load(None, [override])
    assert allowed in str(info.value) and override.split("=")[0] in str(info.value)


def test_a_config_path_that_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="is a folder; give a YAML file"):
        config.load(tmp_path)


# The bad configs, through the CLI: exit 2 and exactly one line on stderr, nothing else.
CLI_CASES = [
    ["--set", "train.momentum=-0.9"], ["--set", "train.weight_decay=-1e-4"], ["--set", "train.label_smoothing=2"],
    ["--set", "data.num_classes=0"], ["--set", "device=tpu"], ["--set", "train.warmup_epochs=-1"],
    ["--set", "train.health_every=-1"], ["--set", "train.checkpoint_minutes=-1"], ["--set", "train.grad_clip=-1"],
    ["--set", "train.early_stop_patience=0"], ["--set", "seed=1e23"], ["--set", "seed=-1"],
    ["--set", "train.epochs=.inf"], ["--set", "train.lr=nan"], ["--set", "train.lr=[0.1"], ["--set", "name=../x"],
    ["-c", "DUP"], ["-c", "BINARY"], ["-c", "FOLDER"],
]


@pytest.mark.parametrize("args", CLI_CASES, ids=[" ".join(a) for a in CLI_CASES])
def test_cli_bad_config_is_exit_2_and_one_line(tmp_path, capsys, args):
    from vggnet.cli import main

    (tmp_path / "dup.yaml").write_bytes(b"train:\n  lr: 0.1\n  lr: 0.2\n")
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 8)
    files = {"DUP": str(tmp_path / "dup.yaml"), "BINARY": str(tmp_path / "binary.yaml"), "FOLDER": str(tmp_path)}
    argv = ["train", *[files.get(a, a) for a in args], "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vggnet train: error: ") and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()  # refused before anything was created
