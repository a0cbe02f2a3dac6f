"""``backbone_args`` in a search space: fixed values, and the ones the search chooses.

A backbone that declares its arguments as hyperparameters (``tiny``: ``width``, ``blocks``;
``mobilenetv2``: ``width_mult``) reads them with the language of module hyperparameters: a single
value is fixed, a list is a choice, an int range ``{low, high}`` is a choice of every integer in
it. A searched argument is the Optuna decision ``backbone_args.<name>``, made right after
``backbone``. A backbone with its own argument check (``factory``) takes fixed values only.

Every combination of searched values changes every stage's channels or blocks, so the space is
checked against each combination's layout (at most :data:`MAX_COMBINATIONS`), and searched
arguments need a single backbone (another backbone's arguments mean something else).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.space._dist import Dist, parse_hparam_space

FIELD = "backbone_args"
MAX_COMBINATIONS = 64  # layouts checked at parse time, one per combination of searched values


@dataclass(frozen=True)
class BackboneArgs:
    """``fixed``: the values every spec gets (as written); ``searched``: name -> distribution."""

    fixed: Mapping[str, Any] = field(default_factory=dict)
    searched: Mapping[str, Dist] = field(default_factory=dict)

    def combinations(self) -> list[dict[str, Any]]:
        """Every full argument mapping a spec of the space can have (fixed + one value each)."""
        names = list(self.searched)
        values = [[d.decode(v, f"{FIELD}.{n}") for v in d.values()]
                  for n, d in self.searched.items()]
        return [{**self.fixed, **dict(zip(names, combo, strict=True))}
                for combo in itertools.product(*values)]

    def to_plain(self) -> dict[str, Any]:
        return {**self.fixed, **{k: d.to_plain() for k, d in self.searched.items()}}


def parse_backbone_args(raw: Any, backbones: Sequence[str]) -> BackboneArgs:
    """Split ``raw`` into fixed and searched arguments; ConfigError naming ``backbone_args.<key>``
    for an unknown argument, a value outside its declaration, or a search the space cannot hold."""
    from nas_attn.backbones import get_backbone

    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError(FIELD, raw, "expected a mapping of argument names to values (a list "
                          "of values makes the search choose one)")
    searched: dict[str, Dist] = {}
    for b in backbones:
        entry = get_backbone(b)
        decls = {h.name: h for h in entry.hparams}
        if entry.check_args is not None or not decls:
            continue  # fixed values only: validated by the backbone's own check
        for key, value in raw.items():
            if key not in decls:
                raise ConfigError(f"{FIELD}.{key}", value, f"unknown argument of backbone {b}",
                                  sorted(decls))
            d = parse_hparam_space(decls[key], value, f"{FIELD}.{key}")
            if d.is_fixed:
                continue
            if len(backbones) > 1:
                raise ConfigError(f"{FIELD}.{key}", value, "a searched backbone argument needs "
                                  "a single backbone; the space lists " + ", ".join(backbones))
            if d.size == math.inf:
                raise ConfigError(f"{FIELD}.{key}", value, "a searched backbone argument needs "
                                  "a finite set of values: give a list or a stepped range")
            searched[key] = d
    fixed = {k: v for k, v in raw.items() if k not in searched}
    args = BackboneArgs(fixed, searched)
    n = math.prod(d.size for d in searched.values())
    if n > MAX_COMBINATIONS:
        raise ConfigError(FIELD, args.to_plain(), f"{n} combinations of searched values; at most "
                          f"{MAX_COMBINATIONS}")
    return args
