"""Search: Optuna proposals, Ray Tune distribution and multi-objective early stopping.

Import-light: the pure decision logic (``pruning``) needs only numpy; the Optuna pruner and the
Ray scheduler load optuna / ray on first attribute access.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "HalvingConfig": "nas_attn.search.pruning",
    "ParetoHalving": "nas_attn.search.pruning",
    "decide": "nas_attn.search.pruning",
    "rank_rung": "nas_attn.search.pruning",
    "MOPruner": "nas_attn.search.optuna_pruner",
    "ParetoHalvingScheduler": "nas_attn.search.ray_scheduler",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nas_attn.search' has no attribute {name!r}")


__all__ = sorted(_LAZY)
