"""Reading a run directory (metrics.jsonl, eval.json, config.yaml): the one place that knows
those formats, for the sweep index and the reports. Missing pieces read as empty."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

# The protocol the index calls "test accuracy" when several were evaluated: the paper's
# default single-crop figure, else the first one in eval.json.
PRIMARY_PROTOCOLS = ("centre", "center", "centre_crop")


def read_metrics(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(epoch records, health events) from metrics.jsonl; a torn or damaged line is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    epochs: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    if not path.is_file():
        return epochs, events
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return epochs, events
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if "event" in record:
            events.append(record)
        elif "epoch" in record:
            epochs.append(record)
    return epochs, events


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, OSError):  # not JSON, not UTF-8, or unreadable: read as missing
        return {}
    return data if isinstance(data, dict) else {}


def read_config(run_dir: str | Path) -> dict[str, Any]:
    for name in ("config.yaml", "cell.yaml"):
        path = Path(run_dir) / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_bytes().decode("utf-8"))
            except (yaml.YAMLError, ValueError, OSError):
                continue
            if isinstance(data, dict):
                return data
    return {}


def primary_protocol(evaluation: dict[str, Any]) -> str | None:
    protocols = evaluation.get("protocols") or {}
    for name in PRIMARY_PROTOCOLS:
        if name in protocols:
            return name
    return next(iter(protocols), None)


def accuracy(error: float | None) -> float | None:
    """Error (a fraction, or a percentage when > 1) -> accuracy as a fraction."""
    if error is None:
        return None
    error = float(error)
    return 1.0 - (error / 100.0 if error > 1.0 else error)


def num_classes(run_dir: str | Path, evaluation: dict[str, Any] | None = None) -> int | None:
    """C for the chance level 1/C: eval.json classes, else its confusion matrix, else the config."""
    evaluation = read_json(Path(run_dir) / "eval.json") if evaluation is None else evaluation
    if evaluation.get("classes"):
        return len(evaluation["classes"])
    if evaluation.get("confusion"):
        return len(evaluation["confusion"])
    data = read_config(run_dir).get("data") or {}
    if data.get("name") == "synthetic" and data.get("num_classes"):
        return int(data["num_classes"])
    return {"fashion-mnist": 10, "mnist": 10, "cifar10": 10, "cifar100": 100}.get(data.get("name"))


def summarise_run(run_dir: str | Path) -> dict[str, Any]:
    """The figures the sweep index keeps for a finished run."""
    run_dir = Path(run_dir)
    epochs, _ = read_metrics(run_dir)
    evaluation = read_json(run_dir / "eval.json")
    protocols = evaluation.get("protocols") or {}
    primary = primary_protocol(evaluation)
    vals = [e["val_top1"] for e in epochs if e.get("val_top1") is not None]
    return {
        "test_top1": accuracy(protocols[primary].get("top1_error")) if primary else None,
        "best_val_top1": max(vals) if vals else None,
        "epochs": max((int(e["epoch"]) for e in epochs), default=None),
        "num_classes": num_classes(run_dir, evaluation),
        "protocols": json.dumps(protocols) if protocols else None,
    }
