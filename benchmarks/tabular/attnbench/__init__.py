"""Tabular benchmark of the search: a fully trained finite space (:mod:`.table`), its
generation through the runner (:mod:`.generate`), the replay harness that runs the real
samplers and early stopping against it (:mod:`.replay`), the metrics (:mod:`.metrics`) and
the aggregated curves, targets and plots (:mod:`.report`). See docs/tabular-benchmark.md.
Import-light: Optuna, torch and plotly load only where used.
"""
