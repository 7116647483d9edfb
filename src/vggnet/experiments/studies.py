"""Study steps that run after the cells: the paper's Table 6 ensembles over finished cells.

A spec asks for them under `report.ensembles`:

    report:
      ensembles:
        - name: D+E
          members: [{model.name: D}, {model.name: E}]   # partial cell keys, one per member
          protocols: [dense]

Members are matched seed by seed (D seed 0 with E seed 0, ...), so n ensembles give a
mean ± std like any cell. Results go to sweep_dir/ensembles.json for the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from vggnet.data import sources
from vggnet.eval.preprocess import Preprocessing
from vggnet.eval.protocols import evaluate_models
from vggnet.experiments.index import read_rows
from vggnet.report.rundir import read_config
from vggnet.files import atomic_write
from vggnet.weights.native import load_weights
from vggnet import config


def _matches(key: dict[str, Any], partial: dict[str, Any]) -> bool:
    return all(str(key.get(k)) == str(v) for k, v in partial.items())


def ensemble(sweep_dir: str | Path, members: list[dict[str, Any]], *, protocols: tuple[str, ...] = ("dense",),
             device: str = "cpu") -> list[dict[str, Any]]:
    """Average the posteriors of one finished cell per member, per seed; the eval.json dict
    (protocol rows named "ensemble:<protocol>") per seed that has every member."""
    sweep_dir = Path(sweep_dir)
    rows = [r for r in read_rows(sweep_dir) if r["status"] == "done"]
    results = []
    for seed in sorted({r["seed"] for r in rows}):
        picked = [next((r for r in rows if r["seed"] == seed and _matches(r["key"], m)), None) for m in members]
        if any(r is None for r in picked):
            continue
        dirs = [sweep_dir / "cells" / r["id"] for r in picked]
        nets = []
        for d in dirs:
            model = load_weights(d / "model.safetensors")
            nets.append((model, Preprocessing.from_metadata(model.metadata, str(d))))
        cfg = config.from_dict(read_config(dirs[0]))
        ds = sources.get(cfg.data, seed=cfg.seed)
        result = evaluate_models(nets, ds, protocols=protocols, scales=cfg.eval.scales, device=device,
                                 limit=cfg.eval.limit)  # the test images the members were scored on
        results.append({"seed": seed, "members": [r["id"] for r in picked], "protocols": result["protocols"]})
    return results


def run_ensembles(sweep_dir: str | Path, *, device: str = "cpu") -> Path | None:
    """Evaluate every ensemble the sweep's spec lists; write ensembles.json (None if none asked)."""
    sweep_dir = Path(sweep_dir)
    spec_path = sweep_dir / "spec.yaml"
    spec = yaml.safe_load(spec_path.read_text()) if spec_path.is_file() else {}
    wanted = ((spec or {}).get("report") or {}).get("ensembles") or []
    if not wanted:
        return None
    out = {}
    for item in wanted:
        out[item["name"]] = ensemble(sweep_dir, item["members"], protocols=tuple(item.get("protocols", ["dense"])),
                                     device=device)
    path = sweep_dir / "ensembles.json"
    text = json.dumps(out, indent=1)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path
