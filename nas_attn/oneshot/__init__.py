"""One-shot search: a weight-sharing supernet of a search space (docs/one-shot.md).

- ``supernet.py``: :func:`build_supernet`, :class:`Supernet` (switches, paths, inherited
  weights), :func:`check_space` (what a supernet cannot hold).
- ``training.py``: :func:`train_supernet` (SPOS, FairNAS, learned), :func:`score` with
  BatchNorm recalibration.
- ``learned.py``: the learned switch weights (per-stage architecture logits, REINFORCE).
- ``checkpoint.py``: safetensors + JSON, refused when from another space or recipe.

Loads torch on import: import it where it is used, not from ``nas_attn``.
"""

from nas_attn.oneshot.checkpoint import load_supernet, recipe_of, save_supernet
from nas_attn.oneshot.learned import LearnedSettings
from nas_attn.oneshot.supernet import (
    Supernet,
    Switch,
    all_paths,
    build_supernet,
    check_space,
    choice_key,
    stage_options,
)
from nas_attn.oneshot.training import (
    MODES,
    Score,
    SupernetTraining,
    calibration_batches,
    fair_paths,
    recalibrate_bn,
    score,
    train_supernet,
    uniform_path,
)

__all__ = [
    "MODES",
    "LearnedSettings",
    "Score",
    "Supernet",
    "SupernetTraining",
    "Switch",
    "all_paths",
    "build_supernet",
    "calibration_batches",
    "check_space",
    "choice_key",
    "fair_paths",
    "load_supernet",
    "recalibrate_bn",
    "recipe_of",
    "save_supernet",
    "score",
    "stage_options",
    "train_supernet",
    "uniform_path",
]
