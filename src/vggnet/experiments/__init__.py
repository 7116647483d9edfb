"""Sweeps, the run index and reports (docs/experiments.md).

- spec.py: a sweep spec (base config, grid, seeds, budgets) -> cells
- sweep.py: run the cells as `vggnet train` subprocesses, --jobs at a time, resumable
- index.py: sweep.db, the SQLite index of runs, their status and final metrics
- summary.py: per-cell mean ± std, min, max and the "never learned" share
- report.py: the sweep's report.html (on vggnet.report's pieces) and the RESULTS.md tables
- paper.py, studies.py: the paper's numbers, Table 6 ensembles over finished cells
"""
