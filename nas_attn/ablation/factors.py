"""Factor strings of ablation designs: parsing, default levels, applying a level to a spec.

A factor names one setting of the architecture spec::

    stage2.attention            the gate module at stages[2] (levels: module names or none)
    stage2.position             its insertion position
    stage2.blocks               its block selection (all, first, last or [indices])
    stage2.attention.rd_ratio   one hyperparameter of the module at stages[2]
    stage2.conv / stage2.fusion (and .<hparam>) the conv replacement / the stage fusion
    all.position                the same setting on every stage that has attention in the base

Stages are numbered from 0 as in ``stages[i]`` of the spec (and in SpecError messages);
``stages[2].attention`` is accepted as a synonym of ``stage2.attention``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from nas_attn.arch import ArchSpec, ModuleChoice, StageSpec
from nas_attn.backbones import BLOCK_KEYWORDS, POSITIONS
from nas_attn.errors import ConfigError
from nas_attn.hparams import HParam

SLOTS = ("attention", "position", "blocks", "conv", "fusion")
MODULE_SLOTS = {"attention": "gate", "conv": "conv", "fusion": "fusion"}
_NONE_WORDS = {"attention": ("none",), "conv": ("standard", "none"), "fusion": ("none",)}
_FACTOR_RE = re.compile(
    r"^(?:stage(?P<a>\d+)|stages\[(?P<b>\d+)\]|(?P<all>all))\.(?P<slot>[a-z_]+)"
    r"(?:\.(?P<hp>[A-Za-z_][A-Za-z0-9_]*))?$"
)
FACTOR_FORMS = ("stage<i>.attention", "stage<i>.position", "stage<i>.blocks", "stage<i>.conv",
                "stage<i>.fusion", "stage<i>.<attention|conv|fusion>.<hparam>",
                "all.<same as above>")


@dataclass(frozen=True)
class Factor:
    """A parsed factor: ``stage`` None means every stage the factor applies to in the base."""

    text: str
    stage: int | None
    slot: str
    hparam: str | None = None

    def stages(self, base: ArchSpec) -> list[int]:
        """The stage indices this factor changes; ConfigError if it cannot apply to ``base``.

        ``all.<slot>`` means every stage whose base has a module in that slot (for position and
        blocks: an attention module; for a hyperparameter: a module declaring it).
        """
        n = len(base.stages)
        slot = "attention" if self.slot in ("position", "blocks") else self.slot

        def varies(i: int) -> bool:
            if getattr(base.stages[i], slot) is None:
                return False
            return self.hparam is None or self.hparam in _decl_names(base.stages[i], slot)

        having = [i for i in range(n) if varies(i)]
        if self.stage is None:
            if not having:
                raise ConfigError("factor", self.text, f"no stage of the base has a {slot} "
                                  "module to vary")
            return having
        if self.stage >= n:
            raise ConfigError("factor", self.text, f"{base.backbone} has {n} stages",
                              [f"stage{i}" for i in range(n)])
        needs_module = self.slot in ("position", "blocks") or self.hparam is not None
        if needs_module and self.stage not in having:
            choice = getattr(base.stages[self.stage], slot)
            if choice is not None:  # a module without that hyperparameter
                raise ConfigError("factor", self.text, f"{choice.type} at stage {self.stage} "
                                  f"has no hyperparameter {self.hparam!r}",
                                  _decl_names(base.stages[self.stage], slot) or "(none)")
            raise ConfigError("factor", self.text, f"the base has no {slot} module at stage "
                              f"{self.stage} to vary", [f"stage{i}" for i in having]
                              or "(no stage has one)")
        return [self.stage]

    def hparam_decl(self, base: ArchSpec) -> HParam:
        from nas_attn.modules import get_module

        assert self.hparam is not None
        st = base.stages[self.stages(base)[0]]
        choice = getattr(st, self.slot)
        return get_module(choice.type).hparams.get(self.hparam, f"factor {self.text}")


def _decl_names(stage: StageSpec, slot: str) -> list[str]:
    from nas_attn.modules import get_module

    choice = getattr(stage, slot)
    return [] if choice is None else get_module(choice.type).hparams.names()


def parse_factor(text: str, base: ArchSpec) -> Factor:
    """Parse and check a factor string against a canonical base spec (ConfigError if bad)."""
    if not isinstance(text, str):
        raise ConfigError("factor", text, "expected a factor string", FACTOR_FORMS)
    m = _FACTOR_RE.match(text.strip())
    if not m:
        raise ConfigError("factor", text, "cannot parse", FACTOR_FORMS)
    slot, hp = m["slot"], m["hp"]
    if slot not in SLOTS:
        raise ConfigError("factor", text, f"unknown setting {slot!r}", SLOTS)
    if hp is not None and slot not in MODULE_SLOTS:
        raise ConfigError("factor", text, f"{slot} has no hyperparameters", list(MODULE_SLOTS))
    num = m["a"] or m["b"]
    factor = Factor(text.strip(), None if m["all"] else int(num), slot, hp)
    factor.stages(base)  # raises if the factor cannot apply to this base
    return factor


# ---------------------------------------------------------------------------------------------
# levels


def _stage_positions(base: ArchSpec, idx: Sequence[int]) -> list[str]:
    from nas_attn.backbones import get_backbone

    layout = get_backbone(base.backbone).layout(base.backbone_args)
    have = {p for i in idx for b in layout[i].blocks for p in b.positions}
    return [p for p in POSITIONS if p in have]


def hparam_default_levels(decl: HParam, base_value: Any) -> list[Any]:
    """Default levels of a hyperparameter factor, from its declaration.

    categorical: every choice; bool: True, False; int/float: base/2, base, base*2 clipped to
    [low, high] (ints rounded, odd ints kept odd); subset: the base set and the base set with
    each member left out (where at least ``min_size`` remain).
    """
    if decl.kind == "categorical":
        return list(decl.choices or ())
    if decl.kind == "bool":
        return [True, False]
    if decl.kind == "subset":
        base_set = list(base_value)
        out = [base_set]
        out += [[c for c in base_set if c != m] for m in base_set if len(base_set) - 1 >= decl.min_size]
        return out
    assert decl.low is not None and decl.high is not None
    out: list[Any] = []
    for v in (base_value / 2, base_value, base_value * 2):
        v = min(max(v, decl.low), decl.high)
        if decl.kind == "int":
            v = round(v)
            if decl.odd and v % 2 == 0:
                v = v + 1 if v + 1 <= decl.high else v - 1
        if not any(math.isclose(v, o) for o in out):
            out.append(v)
    return out


def default_levels(factor: Factor, base: ArchSpec) -> list[Any]:
    """Levels used when the user gives none (the base level is among them)."""
    from nas_attn.modules import module_names

    idx = factor.stages(base)
    if factor.hparam is not None:
        choice = getattr(base.stages[idx[0]], factor.slot)
        return hparam_default_levels(factor.hparam_decl(base), choice.params[factor.hparam])
    if factor.slot in MODULE_SLOTS:
        return [None, *module_names(MODULE_SLOTS[factor.slot])]  # type: ignore[arg-type]
    if factor.slot == "position":
        return _stage_positions(base, idx)
    return list(BLOCK_KEYWORDS)


def check_level(factor: Factor, base: ArchSpec, level: Any) -> Any:
    """Normalise one user-given level; ConfigError naming the factor for a value that can never
    be valid (an unknown module, position or out-of-range hyperparameter). Combinations that are
    valid in general but cannot be built in this base surface later as SpecError."""
    from nas_attn.modules import module_names

    field = f"levels[{factor.text}]"
    if factor.hparam is not None:
        return factor.hparam_decl(base).validate(level, field)
    if factor.slot in MODULE_SLOTS:
        kind = MODULE_SLOTS[factor.slot]
        choice = to_choice(level, factor.slot, field)
        names = module_names(kind)  # type: ignore[arg-type]
        if choice is not None and choice.type not in names:
            raise ConfigError(field, choice.type, f"unknown {kind} module",
                              [*_NONE_WORDS[factor.slot][:1], *names])
        return choice
    if factor.slot == "position":
        if level not in POSITIONS:
            raise ConfigError(field, level, "unknown position", POSITIONS)
        return level
    if isinstance(level, str):
        if level not in BLOCK_KEYWORDS:
            raise ConfigError(field, level, "unknown block selection", [*BLOCK_KEYWORDS, "[indices]"])
        return level
    if isinstance(level, int) and not isinstance(level, bool):
        return (level,)
    if isinstance(level, Sequence) and level and all(
        isinstance(i, int) and not isinstance(i, bool) for i in level
    ):
        return tuple(level)
    raise ConfigError(field, level, "expected all, first, last or a list of block indices")


def to_choice(level: Any, slot: str, field: str) -> ModuleChoice | None:
    if level is None or (isinstance(level, str) and level in _NONE_WORDS[slot]):
        return None
    if isinstance(level, ModuleChoice):
        return level
    if isinstance(level, str):
        return ModuleChoice(level, {})
    if isinstance(level, Mapping) and isinstance(level.get("type"), str):
        return ModuleChoice(level["type"], {k: v for k, v in level.items() if k != "type"})
    raise ConfigError(field, level, "expected a module name, {type: ..., <hparams>} or none")


def apply_level(factor: Factor, base: ArchSpec, level: Any,
                idx: Sequence[int] | None = None) -> ArchSpec:
    """``base`` with ``factor`` set to a checked ``level`` (not canonicalised), at the stages
    ``idx`` (default: the factor's stages in ``base``)."""
    stages = list(base.stages)
    for i in factor.stages(base) if idx is None else idx:
        st = stages[i]
        if factor.hparam is not None:
            ch = getattr(st, factor.slot)
            if ch is None:  # another factor removed the module: nothing to set
                continue
            new = ModuleChoice(ch.type, {**ch.params, factor.hparam: level})
            stages[i] = replace(st, **{factor.slot: new})
        else:
            stages[i] = replace(st, **{factor.slot: level})
    return replace(base, stages=tuple(stages))


def base_level(factor: Factor, base: ArchSpec) -> Any:
    """The base's level of ``factor`` (of its first affected stage)."""
    st = base.stages[factor.stages(base)[0]]
    if factor.hparam is not None:
        return getattr(st, factor.slot).params[factor.hparam]
    return getattr(st, factor.slot)


def level_label(level: Any) -> str:
    """A short, stable text for a level: ``none``, ``eca``, ``se(rd_ratio=0.25)``, ``0.125``."""
    if level is None:
        return "none"
    if isinstance(level, ModuleChoice):
        if not level.params:
            return level.type
        inner = ",".join(f"{k}={level_label(v)}" for k, v in level.params.items())
        return f"{level.type}({inner})"
    if isinstance(level, bool):
        return "true" if level else "false"
    if isinstance(level, float):
        return f"{level:g}"
    if isinstance(level, tuple):
        return "[" + ",".join(str(i) for i in level) + "]"
    if isinstance(level, list):
        return "+".join(level_label(v) for v in level) or "{}"
    return str(level)


def display_name(module: str) -> str:
    """How a module is named in descriptions: short names upper-cased (SE, ECA, CBAM)."""
    return module.upper() if len(module) <= 4 else module
