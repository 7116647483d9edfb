"""A sweep spec: a base config, a grid over config keys, seeds, and named budgets.

    base: configs/fashion-mnist/default.yaml   # or an inline {model: ..., train: ...} dict
    set: {train.early_stop_patience: 10}        # overrides every cell shares
    grid:
      model.name: [A, E]                        # a config key and its values
      norm:                                     # a named axis: each value sets several keys
        none: {data.normalize: none, model.batch_norm: false}
        bn: {data.normalize: none, model.batch_norm: true}
    exclude: [{model.name: A, norm: bn}]        # cells to leave out (partial matches)
    seeds: [0, 1, 2]
    out: runs/sweeps/example
    budgets:
      small: {set: {model.width: 0.25}, grid: {model.name: [A]}, seeds: [0]}

A budget replaces the grid axes and seeds it names and adds its `set`, `exclude` (and `report`)
on top. String values may use ``{out}`` (the sweep directory), ``{seed}`` and ``{AXIS}``, the cell's value on
that grid axis (e.g. ``{scale}``); a value that points into another cell's directory makes that
cell a dependency (e.g. pre-initialising D from the A trained at the same scale and seed).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vggnet.errors import ConfigError
from vggnet.experiments.verdicts import check_hypotheses
from vggnet import config

SPEC_KEYS = ("base", "set", "grid", "exclude", "seeds", "out", "budgets", "study", "report", "budget", "hypotheses")


@dataclass
class Cell:
    """One run of the sweep: a point of the grid and a seed."""

    key: dict[str, Any]  # axis -> value (label for named axes)
    seed: int
    overrides: dict[str, Any]  # dotted config key -> value, after substitution
    dir: Path
    depends: list[str] = field(default_factory=list)  # ids of cells that must finish first

    @property
    def id(self) -> str:
        return f"{self.dir.parent.name}/{self.dir.name}"

    @property
    def key_json(self) -> str:
        return json.dumps(self.key, sort_keys=True)


@dataclass
class Spec:
    base: dict[str, Any]
    overrides: dict[str, Any]
    grid: dict[str, Any]
    exclude: list[dict[str, Any]]
    seeds: list[int]
    out: Path
    budget: str | None = None
    study: str | None = None
    report: dict[str, Any] = field(default_factory=dict)
    hypotheses: list[dict[str, Any]] = field(default_factory=list)  # pre-registered; see experiments.verdicts


def _read_yaml(path: Path) -> dict[str, Any]:
    return config.read_yaml(path, "sweep spec", "see configs/studies/ for examples",
                     "a mapping with base:, grid:, seeds:, out:")


def load_spec(path: str | Path, *, budget: str | None = None, out: str | Path | None = None,
              only_seeds: list[int] | None = None) -> Spec:
    """Read a sweep spec, apply a named budget, resolve the base config path.

    `only_seeds` runs a subset of the budget's seeds (one sitting of a study split across several;
    `python -m vggnet.experiments.export` merges the sittings' figures into one file)."""
    path = Path(path)
    data = _read_yaml(path)
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown spec keys {unknown}; valid: {', '.join(SPEC_KEYS)}")
    base = data.get("base") or {}
    if isinstance(base, str):
        base_path = Path(base)
        if not base_path.is_absolute() and not base_path.is_file():
            base_path = path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"{path}: base config {base} not found (relative to the cwd or the spec)")
        base = yaml.safe_load(base_path.read_text()) or {}
    if not isinstance(base, dict):
        raise ConfigError(f"{path}: base must be a config path or a config mapping")
    grid = dict(data.get("grid") or {})
    seeds = list(data.get("seeds") or [0])
    overrides = dict(data.get("set") or {})
    budgets = data.get("budgets") or {}
    report = dict(data.get("report") or {})
    exclude = list(data.get("exclude") or [])
    if budget is not None:
        if budget not in budgets:
            raise ConfigError(f"{path}: no budget '{budget}'; defined: {', '.join(budgets) or 'none'}")
        chosen = budgets[budget] or {}
        grid.update(chosen.get("grid") or {})
        overrides.update(chosen.get("set") or {})
        seeds = list(chosen.get("seeds") or seeds)
        exclude += list(chosen.get("exclude") or [])
        report = {**report, **(chosen.get("report") or {})}
    if only_seeds is not None:
        extra = sorted(set(only_seeds) - {int(s) for s in seeds})
        if extra:
            raise ConfigError(f"{path}: seed(s) {', '.join(map(str, extra))} not among the "
                              f"{'budget' if budget else 'spec'}'s seeds {[int(s) for s in seeds]}")
        seeds = [s for s in seeds if int(s) in set(only_seeds)]
    out_dir = out or data.get("out")
    if budget is not None and out is None and out_dir:
        out_dir = f"{out_dir}-{budget}"
    if not out_dir:
        raise ConfigError(f"{path}: say where the sweep goes with out: DIR or --out DIR")
    for axis, values in grid.items():
        if not isinstance(values, (list, dict)) or not values:
            raise ConfigError(f"{path}: grid axis '{axis}' needs a non-empty list (or a mapping of named variants)")
    spec = Spec(base=base, overrides=overrides, grid=grid, exclude=exclude,
                seeds=[int(s) for s in seeds], out=Path(out_dir), budget=budget, study=data.get("study"),
                report=report, hypotheses=list(data.get("hypotheses") or []))
    cells = expand(spec)  # validate every cell's config now, not halfway through the sweep
    protocols = {p for cell in cells for p in cell_config(spec, cell).eval.protocols}
    ensembles = {str(e.get("name")) for e in report.get("ensembles") or [] if isinstance(e, dict)}
    check_hypotheses(spec.hypotheses, grid, budget=budget, protocols=protocols, ensembles=ensembles, where=str(path))
    return spec


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}}."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _deep_update(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", str(value)).strip("_") or "x"


def cell_name(key: dict[str, Any]) -> str:
    """A readable directory name: 'name=A,norm=bn,batch_size=8'."""
    return ",".join(f"{_slug(axis.split('.')[-1])}={_slug(value)}" for axis, value in key.items()) or "base"


def _substitute(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, text in mapping.items():
            value = value.replace("{" + name + "}", text)
    elif isinstance(value, list):
        value = [_substitute(v, mapping) for v in value]
    return value


def _excluded(key: dict[str, Any], exclude: list[dict[str, Any]]) -> bool:
    return any(all(str(key.get(k)) == str(v) for k, v in rule.items()) for rule in exclude)


def expand(spec: Spec) -> list[Cell]:
    """Every (grid point, seed) as a Cell with its resolved overrides, seed-major: every grid
    point's first seed before any second seed, so a sweep stopped early has seen every cell."""
    axes = list(spec.grid)
    choices = [list(v) if isinstance(v, dict) else v for v in spec.grid.values()]
    points = [dict(zip(axes, p)) for p in (itertools.product(*choices) if axes else [()])]
    points = [key for key in points if not _excluded(key, spec.exclude)]
    cells: list[Cell] = []
    for seed in spec.seeds:
        for key in points:
            overrides = dict(spec.overrides)
            for axis, value in key.items():
                variants = spec.grid[axis]
                if isinstance(variants, dict):
                    overrides.update(variants[value] or {})
                else:
                    overrides[axis] = value
            overrides["seed"] = seed
            mapping = {**{axis: str(value) for axis, value in key.items()}, "out": str(spec.out), "seed": str(seed)}
            overrides = {k: _substitute(v, mapping) for k, v in overrides.items()}
            cells.append(Cell(key=key, seed=seed, overrides=overrides,
                              dir=spec.out / "cells" / cell_name(key) / f"seed{seed}"))
    by_dir = {str(c.dir): c.id for c in cells}
    for cell in cells:
        cell_config(spec, cell)
        for value in cell.overrides.values():
            if isinstance(value, str):
                cell.depends += [cid for d, cid in by_dir.items() if value.startswith(d + "/") and cid != cell.id]
    return cells


def cell_config(spec: Spec, cell: Cell) -> config.RunConfig:
    """The validated RunConfig of one cell (base + shared overrides + grid point + seed)."""
    data = _deep_update(copy.deepcopy(spec.base), _nest(cell.overrides))
    try:
        return config.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"sweep cell {cell.id}: {exc}") from None
