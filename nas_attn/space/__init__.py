"""The search-space language: YAML -> validated :class:`SearchSpace` -> Optuna suggestions,
enumeration, size, constraint checks and the dry run. See docs/search-spaces.md.

- ``_dist.py``: value distributions (choices, int/float ranges) and their parsing.
- ``_parse.py``: the file format, validated against the module and backbone registries.
- ``_space.py``: :class:`SearchSpace` (``suggest``, ``build``, ``enumerate``, ``size``).
- ``_constraints.py``: ``max_flops`` / ``max_params``, whole network and per stage;
  ``max_latency_ms`` (checked by a study against its latency table: ``latency_violation``).
- ``_dryrun.py``: :func:`dry_run`, what ``nas-attn space`` prints.
"""

from nas_attn.space._constraints import (
    Constraints,
    Limits,
    Violation,
    latency_violation,
    parse_amount,
)
from nas_attn.space._dist import Choice, FloatRange, IntRange
from nas_attn.space._dryrun import DryRunReport, dry_run
from nas_attn.space._parse import load_space, parse_space
from nas_attn.space._space import Point, SearchSpace, StageSpace

__all__ = [
    "Choice",
    "Constraints",
    "DryRunReport",
    "FloatRange",
    "IntRange",
    "Limits",
    "Point",
    "SearchSpace",
    "StageSpace",
    "Violation",
    "dry_run",
    "latency_violation",
    "load_space",
    "parse_amount",
    "parse_space",
]
