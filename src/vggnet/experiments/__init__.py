"""Sweeps, the run index and reports (docs/experiments.md).

- spec.py: a sweep spec (base config, grid, seeds, budgets) -> cells
- sweep.py: run the cells as `vggnet train` subprocesses, --jobs at a time, resumable
- index.py: sweep.db, the SQLite index of runs, their status and final metrics
- runs.py: reading a run directory (metrics.jsonl, eval.json, config.yaml)
- summary.py: per-cell mean ± std, min, max and the "never learned" share
- plots.py, report.py: the figures and the self-contained report.html
- paper.py, studies.py: the paper's numbers, Table 6 ensembles over finished cells
"""
