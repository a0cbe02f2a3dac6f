"""Ablation designs: the arms (architectures) an ablation trains, generated from a base spec.

Every design returns a :class:`Design`: ``arms`` in a fixed order with the base first, each arm's
spec canonical; an arm whose network equals an earlier arm's (same spec hash) is dropped with a
note; a combination that cannot be built (SpecError) is skipped and listed in ``skipped`` as
``(description, reason)``. Bad input (an unparsable factor, an unknown module or position among
the levels) raises ConfigError naming the field, the value and the valid choices.

Designs (see docs/ablation.md):

- :func:`loo`: leave one placement out (each stage's attention, conv replacement and fusion).
- :func:`ofat`: one factor at a time, the others held at the base.
- :func:`factorial`: full factorial over 2-3 factors.
- :func:`swap`: every attention placement gets one alternative gate module, in turn.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from nas_attn.ablation.factors import (
    MODULE_SLOTS,
    Factor,
    apply_level,
    base_level,
    check_level,
    default_levels,
    display_name,
    level_label,
    parse_factor,
)
from nas_attn.arch import ArchSpec, ModuleChoice, StageSpec, canonicalize, spec_hash
from nas_attn.errors import ConfigError, SpecError

if TYPE_CHECKING:
    import pandas as pd

BASE = "base"
Levels = Sequence[str] | Mapping[str, Sequence[Any] | None]


@dataclass(frozen=True)
class Arm:
    """One architecture of an ablation. ``factor``/``level`` say what differs from the base
    (None for the base itself; for factorial arms the factors joined by ``,`` and a tuple of
    level labels)."""

    name: str
    spec: ArchSpec
    factor: str | None
    level: Any
    description: str

    @property
    def hash(self) -> str:
        return spec_hash(self.spec)


@dataclass(frozen=True)
class Cell:
    """One cell of a factorial: its level label per factor and the arm that trains it (None if
    the combination cannot be built)."""

    levels: Mapping[str, str]
    arm: str | None


class Design(NamedTuple):
    arms: list[Arm]
    skipped: list[tuple[str, str]]
    notes: list[str]
    cells: tuple[Cell, ...] = ()  # factorial designs only

    @property
    def descriptions(self) -> dict[str, str]:
        return {a.name: a.description for a in self.arms}


@dataclass
class _Builder:
    base: ArchSpec
    arms: list[Arm] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    by_hash: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.arms.append(Arm(BASE, self.base, None, None, "base"))
        self.by_hash[spec_hash(self.base)] = BASE

    def add(self, name: str, spec: ArchSpec, factor: str | None, level: Any,
            description: str) -> str | None:
        """Add an arm; returns the name of the arm that trains this network (an earlier one
        for a duplicate) or None if it cannot be built."""
        try:
            canon = canonicalize(spec)
        except SpecError as e:
            self.skipped.append((f"{name} ({description})", str(e)))
            return None
        h = spec_hash(canon)
        if h in self.by_hash:
            self.notes.append(f"{name} ({description}): same network as arm "
                              f"{self.by_hash[h]!r} (spec hash {h}); dropped")
            return self.by_hash[h]
        taken = {a.name for a in self.arms}
        unique, k = name, 2
        while unique in taken:
            unique, k = f"{name}#{k}", k + 1
        self.arms.append(Arm(unique, canon, factor, level, description))
        self.by_hash[h] = unique
        return unique

    def design(self, cells: list[Cell] | None = None) -> Design:
        return Design(self.arms, self.skipped, self.notes, tuple(cells or ()))


def _where(idx: Sequence[int]) -> str:
    return f"stage {idx[0]}" if len(idx) == 1 else "stages " + ", ".join(map(str, idx))


def _module_text(choice: ModuleChoice | None, slot: str) -> str:
    """``SE``, or ``SE(rd_ratio=0.25)`` when hyperparameters differ from the defaults."""
    from nas_attn.modules import MODULES

    if choice is None:
        return {"attention": "no attention", "conv": "standard conv", "fusion": "no fusion"}[slot]
    defaults = MODULES.get(choice.type).hparams.defaults() if choice.type in MODULES else {}
    changed = {k: v for k, v in choice.params.items() if k not in defaults or v != defaults[k]}
    if changed:
        return display_name(choice.type) + level_label(ModuleChoice("", changed))
    return display_name(choice.type)


def _olds(base: ArchSpec, idx: Sequence[int], slot: str) -> str:
    names: list[str] = []
    for i in idx:
        t = _module_text(getattr(base.stages[i], slot), slot)
        if t not in names:
            names.append(t)
    return "/".join(names)


def describe(factor: Factor, base: ArchSpec, level: Any) -> str:
    """A human sentence for ``factor = level`` against the base, as used in verdicts."""
    idx = factor.stages(base)
    where = _where(idx)
    old = base_level(factor, base)
    if factor.hparam is not None:
        mod = _olds(base, idx, factor.slot)
        return (f"{mod} {factor.hparam}={level_label(level)} instead of {level_label(old)} "
                f"at {where}")
    if factor.slot in MODULE_SLOTS:
        olds, new = _olds(base, idx, factor.slot), _module_text(level, factor.slot)
        if level is None and factor.slot == "attention":
            return f"without {olds} at {where}"
        if all(getattr(base.stages[i], factor.slot) is None for i in idx):
            return f"{new} added at {where}"
        return f"{new} instead of {olds} at {where}"
    mod = _olds(base, idx, "attention")
    if factor.slot == "position":
        return f"{mod} at {level} instead of {old} at {where}"
    return f"{mod} on blocks {level_label(level)} instead of {level_label(old)} at {where}"


def _plain_level(level: Any) -> Any:
    """A level as stored on an Arm: a module by its name (or its dict when it has settings)."""
    if isinstance(level, ModuleChoice):
        return level.type if not level.params else level.to_dict()
    return level


def _factor_levels(factors: Levels, base: ArchSpec, field: str) -> list[tuple[Factor, list[Any]]]:
    if isinstance(factors, str):
        factors = [factors]
    items = list(factors.items()) if isinstance(factors, Mapping) else [(f, None) for f in factors]
    if not items:
        raise ConfigError(field, [], "needs at least one factor")
    out = []
    for text, levels in items:
        f = parse_factor(text, base)
        if levels is None:
            levels = default_levels(f, base)
        elif isinstance(levels, str) or not isinstance(levels, Sequence) or not levels:
            raise ConfigError(f"levels[{f.text}]", levels, "expected a non-empty list of levels")
        out.append((f, [check_level(f, base, lv) for lv in levels]))
    seen = [f.text for f, _ in out]
    if len(set(seen)) != len(seen):
        raise ConfigError(field, seen, "duplicate factor")
    return out


# ---------------------------------------------------------------------------------------------
# the designs


def loo(base: Mapping[str, Any] | ArchSpec, include_plain: bool = False) -> Design:
    """Leave-one-out: the base, then the base without each placement in turn (per stage:
    attention, conv replacement, fusion). ``include_plain`` adds the backbone with nothing."""
    base = canonicalize(base)
    b = _Builder(base)
    for i, st in enumerate(base.stages):
        for slot in MODULE_SLOTS:
            choice = getattr(st, slot)
            if choice is None:
                continue
            spec = replace(base, stages=tuple(
                replace(s, **{slot: None}) if j == i else s for j, s in enumerate(base.stages)))
            what = {"attention": display_name(choice.type),
                    "conv": f"{display_name(choice.type)} conv",
                    "fusion": f"{display_name(choice.type)} fusion"}[slot]
            b.add(f"loo:stage{i}.{slot}", spec, f"stage{i}.{slot}", None,
                  f"without {what} at stage {i}")
    if len(b.arms) == 1 and not b.skipped and not b.notes:
        raise ConfigError("base", base.to_dict(), "has no attention, conv or fusion placement "
                          "to leave out")
    if include_plain:
        plain = replace(base, stages=tuple(StageSpec() for _ in base.stages))
        b.add("plain", plain, None, None, "plain backbone (no placement at all)")
    return b.design()


def ofat(base: Mapping[str, Any] | ArchSpec, factors: Levels) -> Design:
    """One factor at a time: for each factor, each of its levels with every other setting at
    the base. ``factors`` is a list of factor strings (levels defaulted from the declarations)
    or a mapping factor -> levels (None for the default)."""
    base = canonicalize(base)
    b = _Builder(base)
    for f, levels in _factor_levels(factors, base, "factors"):
        for lv in levels:
            b.add(f"{f.text}={level_label(lv)}", apply_level(f, base, lv), f.text, _plain_level(lv),
                  describe(f, base, lv))
    return b.design()


def _is_base_level(f: Factor, base: ArchSpec, level: Any, base_hash: str) -> bool:
    try:
        return spec_hash(apply_level(f, base, level)) == base_hash
    except SpecError:
        return False


def _overlap(a: Factor, b: Factor, base: ArchSpec) -> bool:
    """Whether two factors set the same thing on a common stage (a module and one of its
    hyperparameters, or the same setting twice)."""
    if not set(a.stages(base)) & set(b.stages(base)):
        return False
    return a.slot == b.slot and (a.hparam == b.hparam or a.hparam is None or b.hparam is None)


def factorial(base: Mapping[str, Any] | ArchSpec, factors: Levels) -> Design:
    """Full factorial over 2-3 factors: one arm per combination of levels (the product).

    ``Design.cells`` lists every combination with the arm that trains it (a cell equal to the
    base maps to ``base``; a cell that duplicates another maps to that arm). Factors that set
    the same thing (``stage1.attention`` and ``stage1.attention.rd_ratio``) are refused.
    """
    base = canonicalize(base)
    fl = _factor_levels(factors, base, "factors")
    if not 2 <= len(fl) <= 3:
        raise ConfigError("factors", [f.text for f, _ in fl], "a factorial needs 2 or 3 factors")
    for (a, _), (c, _) in itertools.combinations(fl, 2):
        if _overlap(a, c, base):
            raise ConfigError("factors", [a.text, c.text], "these factors set the same thing; "
                              "vary one of them")
    b = _Builder(base)
    joined = ",".join(f.text for f, _ in fl)
    base_hash = spec_hash(base)
    cells: list[Cell] = []
    for combo in itertools.product(*(levels for _, levels in fl)):
        spec = base
        for (f, _), lv in zip(fl, combo, strict=True):
            spec = apply_level(f, spec, lv, f.stages(base))
        labels = tuple(level_label(lv) for lv in combo)
        name = ",".join(f"{f.text}={lab}" for (f, _), lab in zip(fl, labels, strict=True))
        desc = "; ".join(describe(f, base, lv) for (f, _), lv in zip(fl, combo, strict=True)
                         if not _is_base_level(f, base, lv, base_hash)) or "base"
        try:
            same_as_base = spec_hash(spec) == base_hash
        except SpecError:
            same_as_base = False
        if same_as_base and b.arms[0].factor is None:
            b.arms[0] = replace(b.arms[0], factor=joined, level=labels)
            arm: str | None = BASE
        else:
            arm = b.add(name, spec, joined, labels, desc)
        cells.append(Cell(dict(zip((f.text for f, _ in fl), labels, strict=True)), arm))
    return b.design(cells)


def swap(base: Mapping[str, Any] | ArchSpec, modules: Sequence[str] | None = None) -> Design:
    """Each alternative gate module in turn at every attention placement of the base (same
    positions and blocks, the module's default hyperparameters). Alternatives: ``modules`` or
    every registered gate module except one that the base already uses at every placement.
    Conv replacements and fusions of the base are kept as they are."""
    from nas_attn.modules import module_names

    base = canonicalize(base)
    idx = [i for i, s in enumerate(base.stages) if s.attention is not None]
    if not idx:
        raise ConfigError("base", base.to_dict(), "has no attention module to swap")
    gates = module_names("gate")
    if modules is None:
        used = {base.stages[i].attention.type for i in idx}  # type: ignore[union-attr]
        modules = [m for m in gates if used != {m}]
    for m in modules:
        if m not in gates:
            raise ConfigError("modules", m, "unknown gate module", gates)
    b = _Builder(base)
    olds = _olds(base, idx, "attention")
    for m in modules:
        stages = tuple(replace(s, attention=ModuleChoice(m, {})) if i in idx else s
                       for i, s in enumerate(base.stages))
        b.add(f"swap:{m}", replace(base, stages=stages), "all.attention", m,
              f"{display_name(m)} instead of {olds} at {_where(idx)}")
    return b.design()


def cells_frame(design: Design) -> pd.DataFrame:
    """The factorial cells as a table: one row per cell, columns ``arm`` and one per factor
    (level labels, ``str`` dtype). Cells that cannot be built are left out."""
    import pandas as pd

    if not design.cells:
        raise ConfigError("design", None, "not a factorial design (it has no cells)")
    rows = [{"arm": c.arm, **c.levels} for c in design.cells if c.arm is not None]
    return pd.DataFrame(rows).astype("str")
