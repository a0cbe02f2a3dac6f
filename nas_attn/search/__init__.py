"""Search: Optuna proposals, Ray Tune distribution and multi-objective early stopping.

Import-light: the pure decision logic (``pruning``) needs only numpy; the Optuna pruner and the
Ray scheduler load optuna / ray on first attribute access.
"""

from __future__ import annotations

from nas_attn._imports import lazy_getattr

_LAZY = {
    "HalvingConfig": "nas_attn.search.pruning",
    "ParetoHalving": "nas_attn.search.pruning",
    "decide": "nas_attn.search.pruning",
    "rank_rung": "nas_attn.search.pruning",
    "MOPruner": "nas_attn.search.optuna_pruner",
    "ParetoHalvingScheduler": "nas_attn.search.ray_scheduler",
}


__getattr__ = lazy_getattr("nas_attn.search", _LAZY)


__all__ = sorted(_LAZY)
