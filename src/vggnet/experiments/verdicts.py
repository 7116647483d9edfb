"""Pre-registered hypotheses and their verdicts: what a study claims before it runs, decided by
a test chosen with it, from the sweep's index.

A spec lists them under `hypotheses:`, written before the sweep runs:

    hypotheses:
      - claim: LRN does not improve A (Table 3)
        a: {model.name: A-LRN}          # grid values (a partial cell key); may add protocol: or ensemble:
        b: {model.name: A}              # or value: 10 to compare a with a constant
        protocol: centre                # the test protocol scored (default: each run's first)
        metric: top1_error              # top1_error | top5_error (%), never_learned (% of runs)
        expect: same                    # lower | higher | same: a's metric vs b's
        threshold: 1.0                  # points: the smallest difference that counts
        test: bootstrap                 # bootstrap | sign
        budgets: [medium]               # optional: the budgets it applies to (`full` = no budget)

Runs of a and b are paired by seed and by every grid axis neither side names (A-LRN and A of
the same scale and seed), so one hypothesis may pool over the other axes. With d the per-pair
difference a - b in points, and the mean's seeded bootstrap interval at 1 - alpha (0.95):

- `bootstrap`: lower reproduces when the interval lies below -threshold, does not when it lies
  at or above it (the effect is excluded); higher mirrors it; same reproduces when the interval
  lies inside (-threshold, threshold) and does not when it lies wholly outside.
- `sign`: an exact binomial sign test over the non-zero differences, one-sided at alpha: lower
  reproduces when the pairs favour a significantly and the mean difference is beyond
  -threshold, does not when they favour b significantly. (With n pairs the smallest p is
  2^-n: 3 pairs can never reach 0.05, which the verdict then says.)
- Fewer than MIN_BOOTSTRAP_N pairs are `unresolved` under `bootstrap`: the interval of one pair
  is that pair's value, of two the pair's span, which says nothing about the seeds not run.

Anything else is `unresolved`; every verdict carries n, the mean difference and the interval.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vggnet.errors import ConfigError
from vggnet.experiments.index import read_rows
from vggnet.experiments.summary import never_learned
from vggnet.report.rundir import accuracy, read_json

EXPECTATIONS = ("lower", "higher", "same")
MIN_BOOTSTRAP_N = 3
TESTS = ("bootstrap", "sign")
METRICS = ("top1_error", "top5_error", "never_learned")
SIDE_KEYS = ("protocol", "ensemble")  # keys of a side that are not grid axes
HYPOTHESIS_KEYS = ("claim", "source", "a", "b", "value", "protocol", "metric", "expect", "threshold", "test",
                   "alpha", "budgets")
BOOTSTRAP_RESAMPLES = 10_000


@dataclass
class Verdict:
    claim: str
    source: str
    verdict: str  # reproduces | does not | unresolved
    n: int  # pairs
    mean: float | None  # mean difference a - b, points
    low: float | None  # bootstrap interval of the mean
    high: float | None
    p: float | None  # sign test, one-sided in the expected direction (None for bootstrap)
    test: str
    note: str = ""


def applies(hypothesis: dict[str, Any], budget: str | None) -> bool:
    """Whether a hypothesis is tested at this budget (all budgets unless it lists some)."""
    wanted = hypothesis.get("budgets")
    return wanted is None or (budget or "full") in wanted


def check_hypotheses(hypotheses: Any, grid: dict[str, Any], *, budget: str | None, protocols: set[str],
                     ensembles: set[str], where: str) -> None:
    """ConfigError naming the first hypothesis that is malformed or names a cell, protocol or
    ensemble the sweep does not have (only those that apply at this budget)."""
    if not isinstance(hypotheses, list):
        raise ConfigError(f"{where}: hypotheses must be a list of mappings")
    for i, h in enumerate(hypotheses):
        name = f"{where}: hypothesis {i + 1}" + (f" ({h.get('claim')!r})" if isinstance(h, dict) else "")
        if not isinstance(h, dict) or not isinstance(h.get("a"), dict):
            raise ConfigError(f"{name}: needs a: {{axis: value, ...}}")
        unknown = sorted(set(h) - set(HYPOTHESIS_KEYS))
        if unknown:
            raise ConfigError(f"{name}: unknown keys {unknown}; valid: {', '.join(HYPOTHESIS_KEYS)}")
        if ("b" in h) == ("value" in h):
            raise ConfigError(f"{name}: give exactly one of b: (cells) or value: (a constant)")
        for key, allowed in (("expect", EXPECTATIONS), ("test", TESTS), ("metric", METRICS)):
            if key in h and h[key] not in allowed or (key == "expect" and key not in h):
                raise ConfigError(f"{name}: {key} must be one of {', '.join(allowed)}")
        if h.get("test", "bootstrap") == "sign" and h["expect"] == "same":
            raise ConfigError(f"{name}: a sign test cannot show 'same'; use test: bootstrap")
        if not applies(h, budget):
            continue
        for side in ("a", "b"):
            cell = h.get(side)
            if cell is None:
                continue
            if not isinstance(cell, dict):
                raise ConfigError(f"{name}: {side} must be a mapping of grid values")
            for axis, value in cell.items():
                if axis == "protocol":
                    if value not in protocols:
                        raise ConfigError(f"{name}: {side} names protocol {value!r}, which the runs do not score "
                                          f"({', '.join(sorted(protocols))})")
                elif axis == "ensemble":
                    if value not in ensembles:
                        raise ConfigError(f"{name}: {side} names ensemble {value!r}; report.ensembles has "
                                          f"{', '.join(sorted(ensembles)) or 'none'}")
                elif axis not in grid:
                    raise ConfigError(f"{name}: {side} names grid axis {axis!r}, which the grid does not have "
                                      f"(axes: {', '.join(grid)})")
                elif str(value) not in [str(v) for v in grid[axis]]:
                    raise ConfigError(f"{name}: {side} names cell {axis}={value}, which the grid does not have "
                                      f"({axis}: {', '.join(str(v) for v in grid[axis])})")
        if h.get("protocol") is not None and h["protocol"] not in protocols:
            raise ConfigError(f"{name}: protocol {h['protocol']!r} is not scored by the runs "
                              f"({', '.join(sorted(protocols))})")


def sign_test(wins: int, n: int) -> float:
    """One-sided exact binomial p: P(X >= wins) for X ~ Binomial(n, 1/2); 1.0 when n is 0."""
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(wins, n + 1)) / 2 ** n


def bootstrap_interval(values: list[float], *, alpha: float = 0.05, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval (1 - alpha) of the mean; seeded, so a report is reproducible."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    lo = means[int(math.floor(alpha / 2 * (resamples - 1)))]
    hi = means[int(math.ceil((1 - alpha / 2) * (resamples - 1)))]
    return lo, hi


def _value(row: dict[str, Any], protocol: str | None, metric: str) -> float | None:
    """A run's metric in points: error % under the protocol, or 100 when it never learned."""
    figures = row.get("protocols") or {}
    protocol = protocol or next(iter(figures), None)
    if protocol not in figures:
        return None
    top1 = accuracy(figures[protocol].get("top1_error"))
    if metric == "never_learned":
        return 100.0 if never_learned(top1, row.get("num_classes")) else 0.0
    acc = accuracy(figures[protocol].get(metric))
    return None if acc is None else 100.0 * (1.0 - acc)


def _side_rows(side: dict[str, Any], rows: list[dict[str, Any]], ensembles: dict[str, Any]) -> list[dict[str, Any]]:
    """Finished runs (or ensemble results, one per seed) matching one side of a hypothesis."""
    if "ensemble" in side:
        return [{"key": {}, "seed": r["seed"], "num_classes": 10,
                 "protocols": {k.split(":", 1)[-1]: v for k, v in r["protocols"].items()}}
                for r in ensembles.get(side["ensemble"], [])]
    cell = {k: v for k, v in side.items() if k not in SIDE_KEYS}
    return [r for r in rows if r["status"] == "done" and all(str(r["key"].get(k)) == str(v) for k, v in cell.items())]


def differences(h: dict[str, Any], rows: list[dict[str, Any]], ensembles: dict[str, Any] | None = None) -> list[float]:
    """Per-pair differences a - b (points) of a hypothesis, paired by seed and the free axes."""
    ensembles = ensembles or {}
    metric = h.get("metric", "top1_error")
    a_side, b_side = h["a"], h.get("b")
    a_rows = _side_rows(a_side, rows, ensembles)
    if b_side is None:
        values = [_value(r, a_side.get("protocol", h.get("protocol")), metric) for r in a_rows]
        return [v - float(h["value"]) for v in values if v is not None]
    out = []
    for ra, rb in _pairs(a_side, b_side, a_rows, _side_rows(b_side, rows, ensembles)):
        va = _value(ra, a_side.get("protocol", h.get("protocol")), metric)
        vb = _value(rb, b_side.get("protocol", h.get("protocol")), metric)
        if va is not None and vb is not None:
            out.append(va - vb)
    return out


def _pairs(a_side: dict[str, Any], b_side: dict[str, Any], a_rows: list[dict[str, Any]],
           b_rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each a run with its b partner: the same seed and the same value on every axis neither side names."""
    named = {k for side in (a_side, b_side) for k in side if k not in SIDE_KEYS}
    out = []
    for ra in a_rows:
        free = {k: str(v) for k, v in ra["key"].items() if k not in named}
        for rb in b_rows:
            if rb["seed"] == ra["seed"] and not any(str(rb["key"].get(k)) != v for k, v in free.items() if rb["key"]):
                out.append((ra, rb))
                break
    return out


def planned_pairs(h: dict[str, Any], cells: list[Any]) -> int:
    """How many pairs a hypothesis gets if every planned run (sweep cells: .key, .seed) finishes."""
    seeds = {c.seed for c in cells}
    if "ensemble" in h["a"] or "ensemble" in (h.get("b") or {}):
        return len(seeds)  # one ensemble result per seed
    rows = [{"key": c.key, "seed": c.seed, "status": "done"} for c in cells]
    a_rows = _side_rows(h["a"], rows, {})
    if "b" not in h:
        return len(a_rows)
    return len(_pairs(h["a"], h["b"], a_rows, _side_rows(h["b"], rows, {})))


def undecidable(h: dict[str, Any], n: int) -> str | None:
    """Why n pairs can never decide this hypothesis whatever the runs show, or None if they can."""
    alpha = float(h.get("alpha", 0.05))
    if h.get("test", "bootstrap") == "sign":
        if _sign_too_few(n, alpha):
            return f"a sign test on {n} pairs cannot reach p < {alpha:g} (it needs {sign_pairs_needed(alpha)})"
    elif n < MIN_BOOTSTRAP_N:
        return f"{n} pair(s): a bootstrap interval needs at least {MIN_BOOTSTRAP_N}"
    return None


def undecidable_hypotheses(hypotheses: list[dict[str, Any]], cells: list[Any], *,
                           budget: str | None) -> list[tuple[str, str]]:
    """(claim, why) for each hypothesis that applies at this budget and that the planned runs
    (`cells`, every seed) can never decide: checked before a sweep runs, not after."""
    out = []
    for h in hypotheses:
        if applies(h, budget):
            why = undecidable(h, planned_pairs(h, cells))
            if why:
                out.append((str(h.get("claim", "")), why))
    return out


def _sign_too_few(n: int, alpha: float) -> bool:
    """Whether n non-tied pairs are too few for a one-sided sign test to reach p < alpha (its
    smallest p is 2^-n)."""
    return 2.0 ** -n >= alpha


def sign_pairs_needed(alpha: float) -> int:
    """The fewest non-tied pairs with which a one-sided sign test can reach p < alpha."""
    return math.floor(math.log2(1.0 / alpha)) + 1


def decide(h: dict[str, Any], diffs: list[float]) -> Verdict:
    """The verdict of one hypothesis from its per-pair differences (see the module docstring)."""
    expect, test = h["expect"], h.get("test", "bootstrap")
    t, alpha = float(h.get("threshold", 0.0)), float(h.get("alpha", 0.05))
    base = dict(claim=str(h.get("claim", "")), source=str(h.get("source", "")), test=test, n=len(diffs))
    if not diffs:
        return Verdict(verdict="unresolved", mean=None, low=None, high=None, p=None, note="no finished pairs", **base)
    mean = sum(diffs) / len(diffs)
    low, high = bootstrap_interval(diffs, alpha=alpha)
    sign = -1.0 if expect == "lower" else 1.0  # the direction the claim expects d to take
    p = None
    note = ""
    if test == "sign":
        towards = sum(1 for d in diffs if sign * d > 0)
        against = sum(1 for d in diffs if sign * d < 0)
        p = sign_test(towards, towards + against)
        if p < alpha and sign * mean > t:
            verdict = "reproduces"
        elif sign_test(against, towards + against) < alpha:
            verdict = "does not"
        else:
            verdict = "unresolved"
            if _sign_too_few(towards + against, alpha):
                note = f"{towards + against} non-tied pairs cannot reach p < {alpha}"
    elif (why := undecidable(h, len(diffs))) is not None:
        verdict, note = "unresolved", why
    elif expect == "same":
        verdict = ("reproduces" if -t < low and high < t else
                   "does not" if low >= t or high <= -t else "unresolved")
    else:
        near, far = (high, low) if expect == "lower" else (-low, -high)  # in the claim's direction
        verdict = "reproduces" if near < -t else "does not" if far >= -t else "unresolved"
    return Verdict(verdict=verdict, mean=mean, low=low, high=high, p=p, note=note, **base)


def verdicts(hypotheses: list[dict[str, Any]], rows: list[dict[str, Any]], *, budget: str | None = None,
             ensembles: dict[str, Any] | None = None) -> list[Verdict]:
    """Every hypothesis that applies at this budget, decided from the sweep's index rows."""
    return [decide(h, differences(h, rows, ensembles)) for h in hypotheses if applies(h, budget)]


def describe(h: dict[str, Any]) -> str:
    """What is compared, in one line: 'A-LRN vs A, centre top1_error, same within 1.0 (bootstrap)'."""
    def side(s: dict[str, Any]) -> str:
        return ", ".join(f"{v}" for v in s.values()) or "all"

    other = side(h["b"]) if "b" in h else str(h["value"])
    return (f"{side(h['a'])} vs {other}: {h.get('metric', 'top1_error')}"
            f"{' (' + h['protocol'] + ')' if h.get('protocol') else ''}, {h['expect']}"
            f"{' by > ' if h['expect'] != 'same' else ' within '}{float(h.get('threshold', 0.0)):g} points, "
            f"{h.get('test', 'bootstrap')}")


def fmt_verdict(v: Verdict) -> tuple[str, str, str]:
    """(verdict, 'mean [low, high]', 'p') strings for tables."""
    interval = "–" if v.mean is None else f"{v.mean:+.1f} [{v.low:+.1f}, {v.high:+.1f}]"
    return v.verdict + (f" ({v.note})" if v.note else ""), interval, "–" if v.p is None else f"{v.p:.3f}"


def sweep_verdicts(sweep_dir: str | Path) -> list[tuple[dict[str, Any], Verdict]]:
    """(hypothesis, verdict) for every hypothesis in a sweep's spec.yaml that applies at its budget."""
    sweep_dir = Path(sweep_dir)
    spec_path = sweep_dir / "spec.yaml"
    spec = (yaml.safe_load(spec_path.read_text()) if spec_path.is_file() else None) or {}
    return spec_verdicts(spec, read_rows(sweep_dir), read_json(sweep_dir / "ensembles.json"))


def spec_verdicts(spec: dict[str, Any], rows: list[dict[str, Any]],
                  ensembles: dict[str, Any]) -> list[tuple[dict[str, Any], Verdict]]:
    """(hypothesis, verdict) from a spec (as in spec.yaml), index rows and ensembles.json's results."""
    hypotheses = [h for h in spec.get("hypotheses") or [] if applies(h, spec.get("budget"))]
    return [(h, decide(h, differences(h, rows, ensembles))) for h in hypotheses]


VERDICT_HEADERS = ["claim", "source", "compared", "n", "mean a - b [interval]", "p (sign)", "verdict"]


def verdict_rows(pairs: list[tuple[dict[str, Any], Verdict]]) -> list[list[str]]:
    """One table row per hypothesis (VERDICT_HEADERS), for the HTML report and RESULTS.md."""
    out = []
    for h, v in pairs:
        verdict, interval, p = fmt_verdict(v)
        out.append([v.claim, v.source, describe(h), str(v.n), interval, p, verdict])
    return out


def verdicts_markdown(sweep_dir: str | Path) -> str:
    """The verdicts table of a sweep directory as Markdown ('' when the spec has no hypotheses)."""
    return verdicts_table(sweep_verdicts(sweep_dir))


def verdicts_table(pairs: list[tuple[dict[str, Any], Verdict]]) -> str:
    """(hypothesis, verdict) pairs as a Markdown table ('' when there are none)."""
    rows = verdict_rows(pairs)
    if not rows:
        return ""
    lines = ["| " + " | ".join(VERDICT_HEADERS) + " |", "|" + "---|" * len(VERDICT_HEADERS)]
    lines += ["| " + " | ".join(r[:-1] + [f"**{r[-1]}**"]) + " |" for r in rows]
    return "\n".join(lines) + "\n"
