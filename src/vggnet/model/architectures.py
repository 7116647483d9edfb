"""Paper Table 1 as data: a config letter -> its layer list.

An int is a 3x3 conv with that many output channels, ``(n, k)`` a kxk conv (the 1x1 convs
of config C, the 5x5 convs of B-5x5), "L" AlexNet's local response normalisation, "M" a 2x2
max-pool with stride 2.

``B-5x5`` is the shallow net of section 4.1: B with each pair of 3x3 convs replaced by one
5x5 conv (the same receptive field, section 2.3); the paper measured its top-1 error 7%
above B's (centre crop). Not in Table 1, but built the same way.
"""

from __future__ import annotations

from vggnet.errors import ConfigError

Layer = int | tuple[int, int] | str

CONFIGS: dict[str, list[Layer]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "L", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B-5x5": [(64, 5), "M", (128, 5), "M", (256, 5), "M", (512, 5), "M", (512, 5), "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M",
          512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

# torchvision's names for the configs it has (C and A-LRN have no torchvision model).
ALIASES: dict[str, str] = {"vgg11": "A", "vgg11-lrn": "A-LRN", "vgg13": "B", "vgg16": "D", "vgg19": "E"}

# AlexNet's LRN (Krizhevsky et al. 2012), as the paper uses it in A-LRN.
LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}

# Smallest input the five pools leave at least one pixel of (28 px sets are padded to 32).
MIN_INPUT = 32
# The fc and conv heads need a 7x7x512 map: a 224 crop (paper).
HEAD_INPUT = 224


def resolve_name(name: str) -> tuple[str, bool]:
    """'vgg16_bn' -> ('D', True); 'D' -> ('D', False). Unknown names list the valid ones."""
    key = name.strip()
    batch_norm = False
    lower = key.lower()
    if lower.endswith("_bn"):
        lower, batch_norm = lower[:-3], True
    if lower in ALIASES:
        return ALIASES[lower], batch_norm
    for letter in CONFIGS:
        if letter.lower() == lower:
            return letter, batch_norm
    valid = ", ".join(list_models())
    raise ConfigError(f"unknown VGG config '{name}'; valid: {valid}")


def list_models() -> list[str]:
    """Every name build_model accepts: the paper's letters, then torchvision-style aliases."""
    aliases = [a for a in ALIASES if a != "vgg11-lrn"]
    return list(CONFIGS) + aliases + [f"{a}_bn" for a in aliases]


def weight_layers(letter: str) -> int:
    """Weight layers as the paper counts them: convs plus the three FC layers."""
    return sum(1 for v in CONFIGS[letter] if not isinstance(v, str)) + 3


def layer_names(letter: str, *, batch_norm: bool = False, head: str = "fc") -> tuple[list[str], list[str]]:
    """The Caffe release's names of every layer, as (features, classifier) in module order:
    conv{b}_{m}, bn{b}_{m} (batch norm), relu{b}_{m}, norm1 (A-LRN), pool{b}; then fc6, relu6,
    drop6, fc7, relu7, drop7, fc8 (the fc and conv heads) or fc8 alone (the gap head)."""
    features: list[str] = []
    block, conv = 1, 0
    for item in CONFIGS[letter]:
        if item == "M":
            features.append(f"pool{block}")
            block, conv = block + 1, 0
        elif item == "L":
            features.append(f"norm{block}")
        else:
            conv += 1
            features += [f"conv{block}_{conv}"] + ([f"bn{block}_{conv}"] if batch_norm else []) + [f"relu{block}_{conv}"]
    classifier = ["fc8"] if head == "gap" else ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    return features, classifier
