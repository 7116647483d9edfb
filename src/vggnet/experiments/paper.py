"""The paper's published numbers (ImageNet val, top-1 / top-5 error %), to print next to ours.

Source: Simonyan & Zisserman 2014, Tables 3, 5 and 6 (arXiv:1409.1556). Our small
runs are on Fashion-MNIST, so only the orderings (who beats whom) are comparable, never the
absolute values.
"""

from __future__ import annotations

from typing import Any

# Table 3, single test scale; per train scale: "256" (fixed S=256), "384", "jitter" ([256; 512]).
TABLE3: dict[str, dict[str, tuple[float, float]]] = {
    "A": {"256": (29.6, 10.4)},
    "A-LRN": {"256": (29.7, 10.5)},
    "B": {"256": (28.7, 9.9)},
    "C": {"256": (28.1, 9.4), "384": (28.1, 9.3), "jitter": (27.3, 8.8)},
    "D": {"256": (27.0, 8.8), "384": (26.8, 8.7), "jitter": (25.6, 8.1)},
    "E": {"256": (27.3, 9.0), "384": (26.9, 8.7), "jitter": (25.5, 8.0)},
}

# Table 5 (jittered S, Q = {256, 384, 512}): dense | multi-crop | both.
TABLE5: dict[str, dict[str, tuple[float, float]]] = {
    "D": {"dense": (24.8, 7.5), "multi-crop": (24.6, 7.5), "both": (24.4, 7.2)},
    "E": {"dense": (24.8, 7.5), "multi-crop": (24.6, 7.4), "both": (24.4, 7.1)},
}

# Table 6: ensembles.
TABLE6: dict[str, tuple[float, float]] = {
    "7 nets (ILSVRC submission)": (24.7, 7.5),
    "D+E, dense": (24.0, 7.1),
    "D+E, multi-crop": (23.9, 7.2),
    "D+E, dense + multi-crop": (23.7, 6.8),
}

# Our eval protocol names (vggnet.eval.protocols) -> Table 5's column. Table 5's "dense" is
# dense evaluation over three test scales, i.e. our multi_scale.
PROTOCOL_COLUMNS = {"multi_scale": "dense", "multi_crop": "multi-crop", "fusion": "both"}
TABLE6_COLUMNS = {"multi_scale": "dense", "dense": "dense", "multi_crop": "multi-crop",
                  "fusion": "dense + multi-crop"}


def table3_reference(key: dict[str, Any]) -> tuple[float, float] | None:
    """The Table 3 figure for a sweep cell keyed by model.name and (optionally) a 'scale'
    axis labelled 'fixed' or 'jitter'."""
    name = str(key.get("model.name", ""))
    column = "jitter" if str(key.get("scale", "fixed")).startswith("jitter") else "256"
    return TABLE3.get(name, {}).get(column)


def table5_reference(name: str, protocol: str) -> tuple[float, float] | None:
    """Table 5's figure for config `name` under one of our multi-scale protocols (None otherwise:
    Table 5 has no single-scale column)."""
    column = PROTOCOL_COLUMNS.get(protocol)
    return TABLE5.get(name, {}).get(column) if column else None
