"""From a plain mapping (a YAML file) to a validated :class:`SearchSpace`.

Every mistake is a ConfigError naming the dotted field path, the bad value and the valid
choices; unknown keys list the valid keys. See docs/search-spaces.md for the language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.space._backbone_args import parse_backbone_args
from nas_attn.space._constraints import (
    CONSTRAINT_KEYS,
    LATENCY_KEY,
    Constraints,
    Limits,
    parse_latency_budget,
)
from nas_attn.space._dist import Choice, Dist, parse_hparam_space
from nas_attn.space._space import (
    NO_ATTENTION,
    NO_FUSION,
    STANDARD_CONV,
    SearchSpace,
    StageSpace,
)

SPACE_KEYS = ("name", "description", "backbone", "backbone_args", "num_classes", "in_chans",
              "input_size", "stages", "tie_stages", "constraints")
STAGE_KEYS = ("attention", "position", "blocks", "conv", "fusion")
DEFAULT_KEYS = ("default", "all_stages")
BLOCK_WORDS = ("all", "first", "last")
_STAGE_KEY = re.compile(r"^(?:stage)?(\d+)$")


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space file; errors name the file and the field."""
    from nas_attn.yamlio import load_yaml

    path = Path(path)
    data = load_yaml(path)
    try:
        return parse_space(data, str(path))
    except ConfigError as e:
        raise type(e)(f"{path}: {e.field}", e.value, e.reason, e.choices) from None


def parse_space(data: Any, source: str = "") -> SearchSpace:
    from nas_attn.backbones import get_backbone

    if not isinstance(data, Mapping):
        raise ConfigError("space", data, "expected a mapping with keys", SPACE_KEYS)
    _check_keys(data, SPACE_KEYS, "")
    name = _text(data.get("name"), "name")
    if not name and source:
        name = Path(source).stem
    backbones = _backbones(data.get("backbone"))
    bargs = parse_backbone_args(data.get("backbone_args"), backbones)
    layouts, laid_out = [], []  # one layout per backbone and combination of searched arguments
    for b in backbones:
        entry = get_backbone(b)
        for args in bargs.combinations():
            layouts.append(entry.layout(entry.validate_args(args)))
            laid_out.append(b)
    n_stages = {len(lay) for lay in layouts}
    if len(n_stages) != 1:
        raise ConfigError("backbone", list(backbones),
                          "the listed backbones must have the same number of stages; counts: "
                          + ", ".join(f"{b} {len(lay)}" for b, lay in zip(laid_out, layouts,
                                                                          strict=True)))
    n = n_stages.pop()
    # blocks per stage: the smallest over the backbones (an index must exist in every one)
    block_counts = [min(len(lay[i].blocks) for lay in layouts) for i in range(n)]
    positions = {p for lay in layouts for st in lay for b in st.blocks for p in b.positions}
    num_classes = _positive_int(data.get("num_classes", 10), "num_classes")
    in_chans = _positive_int(data.get("in_chans", 3), "in_chans")
    input_size = _input_size(data.get("input_size"), in_chans)
    raw_stages = _per_stage(data.get("stages"), n, "stages")
    stages = tuple(
        _stage(raw, field, block_counts[i], positions) for i, (raw, field) in enumerate(raw_stages)
    )
    _check_plugin_shapes(laid_out, layouts, stages)
    tie = data.get("tie_stages", False)
    if not isinstance(tie, bool):
        raise ConfigError("tie_stages", tie, "expected a boolean", [True, False])
    if tie and any(s != stages[0] for s in stages[1:]):
        raise ConfigError("tie_stages", tie, "tied stages need the same candidates in every "
                          "stage: give only stages.default")
    return SearchSpace(
        backbones=backbones,
        stages=stages,
        backbone_args=dict(bargs.fixed),
        searched_backbone_args=dict(bargs.searched),
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        constraints=_constraints(data.get("constraints"), n),
        name=name,
        description=_text(data.get("description"), "description"),
        tie_stages=tie,
    )


# ---------------------------------------------------------------------------------------------


def _check_plugin_shapes(backbones: Sequence[str], layouts: Sequence[Any],
                         stages: Sequence[Any]) -> None:
    """A plugin module among a stage's candidates (default hyperparameters) whose output shape
    is wrong at a position of that stage refuses the space, naming the stage, the position and
    both shapes, before any trial (zoo modules are checked by the conformance kit instead)."""
    from nas_attn.modules import get_module

    for b, layout in zip(backbones, layouts, strict=True):
        for i, (st, info) in enumerate(zip(stages, layout, strict=False)):
            for slot, names in (("attention", st.attention), ("conv", st.conv),
                                ("fusion", st.fusion)):
                for name in names:
                    if name in ("none", "standard") or not get_module(name).is_plugin:
                        continue
                    entry = get_module(name)
                    hp = entry.validate({}, name)
                    for where, args in _plugin_sites(slot, st, info):
                        why = entry.shape_error(*args, **hp)
                        if why:
                            raise ConfigError(f"stages[{i}].{slot}.{name}", None,
                                              f"{name} at {where} of {b} stage {i}: {why}")


def _plugin_sites(slot: str, st: Any, info: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(where, constructor arguments) of every place a candidate of ``slot`` may go."""
    if slot == "fusion":
        return [("the stage's fusion", (info.channels, len(info.blocks)))]
    if slot == "conv":
        return [(f"block {bi}'s 3x3 conv", (*blk.conv[:2], 3, blk.conv[2]))
                for bi, blk in enumerate(info.blocks) if blk.conv is not None]
    return [(f"position {pos} (block {bi}, {blk.positions[pos]} channels)",
             (blk.positions[pos],))
            for pos in st.position.actual() for bi, blk in enumerate(info.blocks)
            if pos in blk.positions]


def _check_keys(d: Mapping[str, Any], allowed: Sequence[str], field: str) -> None:
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{field}.{k}" if field else str(k), k, "unknown key", allowed)


def _text(v: Any, field: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise ConfigError(field, v, "expected a string")
    return v


def _positive_int(v: Any, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(field, v, "expected a positive integer")
    return v


def _input_size(v: Any, in_chans: int) -> tuple[int, int, int] | None:
    if v is None:
        return None
    if not isinstance(v, Sequence) or isinstance(v, str) or len(v) != 3:
        raise ConfigError("input_size", v, "expected [C, H, W]")
    c, h, w = (_positive_int(x, f"input_size[{i}]") for i, x in enumerate(v))
    if c != in_chans:
        raise ConfigError("input_size[0]", c, f"channels must equal in_chans ({in_chans})")
    return (c, h, w)


def _backbones(v: Any) -> tuple[str, ...]:
    from nas_attn.backbones import BACKBONES

    if v is None:
        raise ConfigError("backbone", None, "missing", BACKBONES.keys())
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, Sequence) or not items:
        raise ConfigError("backbone", v, "expected a backbone name or a non-empty list of names",
                          BACKBONES.keys())
    for i, b in enumerate(items):
        f = "backbone" if isinstance(v, str) else f"backbone[{i}]"
        if not isinstance(b, str) or b not in BACKBONES:
            raise ConfigError(f, b, "unknown backbone", BACKBONES.keys())
    if len(set(items)) != len(items):
        raise ConfigError("backbone", list(items), "duplicate backbone")
    return tuple(items)


def _stage_index(key: Any, n: int, field: str) -> int:
    m = _STAGE_KEY.match(str(key)) if not isinstance(key, bool) else None
    valid = [*DEFAULT_KEYS, *range(n)]
    if m is None or int(m.group(1)) >= n:
        raise ConfigError(f"{field}.{key}", key, f"unknown stage key ({n} stages, counted from 0)",
                          valid)
    return int(m.group(1))


def _per_stage(raw: Any, n: int, field: str) -> list[tuple[Any, str]]:
    """``(entry, field)`` per stage from a list, or from a mapping of ``default`` (alias
    ``all_stages``) plus overrides by stage index; an override replaces the default's keys one by
    one, and ``null`` makes that stage plain."""
    if raw is None:
        return [(None, f"{field}[{i}]") for i in range(n)]
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        if len(raw) > n:
            raise ConfigError(field, len(raw), f"the backbone has {n} stages", list(range(n)))
        out = [(s, f"{field}[{i}]") for i, s in enumerate(raw)]
        return out + [(None, f"{field}[{i}]") for i in range(len(raw), n)]
    if not isinstance(raw, Mapping):
        raise ConfigError(field, raw, "expected a list of stages or a mapping of default and "
                          "stage indices", [*DEFAULT_KEYS, *range(n)])
    defaults = [k for k in raw if k in DEFAULT_KEYS]
    if len(defaults) > 1:
        raise ConfigError(f"{field}.{defaults[1]}", defaults[1], "give default or all_stages, "
                          "not both", DEFAULT_KEYS)
    dkey = defaults[0] if defaults else None
    default = raw[dkey] if dkey else None
    if default is not None and not isinstance(default, Mapping):
        raise ConfigError(f"{field}.{dkey}", default, "expected a mapping with keys", STAGE_KEYS)
    overrides: dict[int, tuple[Any, Any]] = {}
    for k, v in raw.items():
        if k in DEFAULT_KEYS:
            continue
        i = _stage_index(k, n, field)
        if i in overrides:
            raise ConfigError(f"{field}.{k}", k, f"stage {i} is given twice")
        overrides[i] = (k, v)
    out = []
    for i in range(n):
        if i not in overrides:
            out.append((default, f"{field}.{dkey}" if dkey else f"{field}[{i}]"))
            continue
        k, v = overrides[i]
        if v is None or default is None:
            out.append((v, f"{field}.{k}"))
        elif not isinstance(v, Mapping):
            raise ConfigError(f"{field}.{k}", v, "expected a mapping with keys", STAGE_KEYS)
        else:
            out.append(({**default, **v}, f"{field}.{k}"))
    return out


def _stage(raw: Any, field: str, n_blocks: int, positions: set[str]) -> StageSpace:
    if raw is None:
        return StageSpace()
    if not isinstance(raw, Mapping):
        raise ConfigError(field, raw, "expected a mapping with keys", STAGE_KEYS)
    _check_keys(raw, STAGE_KEYS, field)
    return StageSpace(
        attention=_modules(raw.get("attention"), "gate", NO_ATTENTION, ("none",),
                           f"{field}.attention"),
        position=_positions(raw.get("position", "post_bn"), positions, f"{field}.position"),
        blocks=_blocks(raw.get("blocks", "all"), n_blocks, f"{field}.blocks"),
        conv=_modules(raw.get("conv"), "conv", STANDARD_CONV, ("standard", "none"),
                      f"{field}.conv"),
        fusion=_modules(raw.get("fusion"), "fusion", NO_FUSION, ("none",), f"{field}.fusion"),
    )


def _modules(raw: Any, kind: str, none_word: str, none_words: tuple[str, ...],
             field: str) -> dict[str, dict[str, Dist]]:
    """Candidates as ``{name: {hparam: sub-space}}``; accepts a name, a list of names (or
    ``{type: name, hparam: sub-space}`` items), or a mapping ``name: {hparam: sub-space}``."""
    from nas_attn.modules import get_module, module_names

    if raw is None:
        return {none_word: {}}
    items: list[tuple[Any, Any, str]] = []  # (name, sub-space, field)
    if isinstance(raw, str):
        items.append((raw, None, field))
    elif isinstance(raw, Mapping):
        items += [(k, v, f"{field}.{k}") for k, v in raw.items()]
    elif isinstance(raw, Sequence):
        for j, it in enumerate(raw):
            if isinstance(it, Mapping):
                if "type" not in it:
                    raise ConfigError(f"{field}[{j}].type", None, "missing module type")
                items.append((it["type"], {k: v for k, v in it.items() if k != "type"},
                              f"{field}[{j}]"))
            else:
                items.append((it, None, f"{field}[{j}]"))
    else:
        raise ConfigError(field, raw, "expected a module name, a list of names or a mapping "
                          "name -> hyperparameter sub-space")
    if not items:
        raise ConfigError(field, raw, "empty list of candidates", [none_word, *module_names(kind)])
    out: dict[str, dict[str, Dist]] = {}
    for name, sub, f in items:
        if name is None or name in none_words:
            if sub:
                raise ConfigError(f, dict(sub), f"{none_word!r} has no hyperparameters")
            name, hp = none_word, {}
        else:
            if not isinstance(name, str) or name not in module_names(kind):
                raise ConfigError(f, name, f"unknown {kind} module",
                                  [none_word, *module_names(kind)])
            hp = _hparams(get_module(name, kind, f), sub, f)
        if name in out:
            raise ConfigError(f, name, "duplicate candidate")
        out[name] = hp
    return out


def _hparams(entry: Any, sub: Any, field: str) -> dict[str, Dist]:
    if sub is None:
        sub = {}
    if not isinstance(sub, Mapping):
        raise ConfigError(field, sub, "expected a mapping hyperparameter -> sub-space",
                          entry.hparams.names() or "(no hyperparameters)")
    # aliases (CA's reduction, ECA's k_size, ...) become the shared names; unknown names list
    # the declared ones
    sub = entry.hparams.shared_names(sub, field, convert=_alias_space)
    out: dict[str, Dist] = {}
    for decl in entry.hparams:
        if decl.name in sub:
            out[decl.name] = parse_hparam_space(decl, sub[decl.name], f"{field}.{decl.name}")
        else:
            out[decl.name] = Choice.of([decl.default])
    return out


def _alias_space(alias: Any, decl: Any, raw: Any, field: str) -> Any:
    """An alias's sub-space in the shared hyperparameter's units: a value or a list of values
    converted one by one; a range only where the alias keeps the units."""
    if alias.convert is None:
        return raw
    if isinstance(raw, Mapping):
        raise ConfigError(field, dict(raw), f"a range of {alias.name} is not a range of "
                          f"{decl.name} ({alias.doc}); give a list of {alias.name} values or "
                          f"a range of {decl.name}", decl.describe())
    if isinstance(raw, list | tuple):
        return [alias.to_target(v, decl, f"{field}[{i}]") for i, v in enumerate(raw)]
    return alias.to_target(raw, decl, field)


def _positions(raw: Any, available: set[str], field: str) -> Choice:
    from nas_attn.backbones import POSITIONS

    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, Sequence) or not items:
        raise ConfigError(field, raw, "expected a position or a non-empty list", POSITIONS)
    for j, p in enumerate(items):
        f = field if isinstance(raw, str) else f"{field}[{j}]"
        if p not in POSITIONS:
            raise ConfigError(f, p, "unknown position", POSITIONS)
        if p not in available:
            raise ConfigError(f, p, "no block of this backbone has this position",
                              sorted(available))
    if len(set(items)) != len(items):
        raise ConfigError(field, list(items), "duplicate position")
    return Choice.of(list(items))


def _blocks(raw: Any, n: int, field: str) -> Choice:
    """A flat list of ints is one selection (as in a spec); any other list is a choice among
    selections: ``[all, last, [0, 2]]``."""
    if isinstance(raw, str | int) or (
        isinstance(raw, Sequence) and raw and all(_is_int(x) for x in raw)
    ):
        items = [raw]
    elif isinstance(raw, Sequence) and raw:
        items = list(raw)
    else:
        raise ConfigError(field, raw, "expected all, first, last, a list of block indices, or a "
                          "list of those", [*BLOCK_WORDS, "[0, 2]"])
    out: list[Any] = []
    for j, it in enumerate(items):
        f = f"{field}[{j}]" if len(items) > 1 or items[0] is not raw else field
        out.append(_selection(it, n, f))
    keys = [str(x) for x in out]
    if len(set(keys)) != len(keys):
        raise ConfigError(field, out, "duplicate block selection")
    return Choice.of(out)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _selection(it: Any, n: int, field: str) -> Any:
    if isinstance(it, str):
        if it in BLOCK_WORDS:
            return it
        try:
            it = [int(s) for s in it.split(",")]
        except ValueError:
            raise ConfigError(field, it, "unknown block selection",
                              [*BLOCK_WORDS, "[0, 2]"]) from None
    if _is_int(it):
        it = [it]
    if not isinstance(it, Sequence) or not it or not all(_is_int(i) for i in it):
        raise ConfigError(field, it, "expected all, first, last or a list of block indices",
                          [*BLOCK_WORDS, "[0, 2]"])
    for i in it:
        if not -n <= i < n:
            raise ConfigError(field, i, f"block index out of range for a stage of {n} blocks",
                              list(range(n)))
    norm = sorted(i % n for i in it)
    if len(set(norm)) != len(norm):
        raise ConfigError(field, list(it), "duplicate block indices")
    return list(it)


def _constraints(raw: Any, n: int) -> Constraints:
    if raw is None:
        return Constraints()
    if not isinstance(raw, Mapping):
        raise ConfigError("constraints", raw, "expected a mapping with keys", CONSTRAINT_KEYS)
    _check_keys(raw, CONSTRAINT_KEYS, "constraints")
    network = Limits.parse({k: v for k, v in raw.items() if k not in ("stages", LATENCY_KEY)},
                           "constraints")
    latency = parse_latency_budget(raw.get(LATENCY_KEY), f"constraints.{LATENCY_KEY}")
    if raw.get("stages") is None:
        return Constraints(network, max_latency_ms=latency)
    stages = tuple(Limits.parse(v, f) for v, f in _per_stage(raw["stages"], n,
                                                             "constraints.stages"))
    return Constraints(network, stages, latency)
