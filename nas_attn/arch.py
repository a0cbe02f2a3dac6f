"""The architecture spec: the tool's central data type.

A plain, JSON/YAML-serialisable description of one network::

    backbone: resnet50            # registered backbone name
    backbone_args: {}             # e.g. {width_mult: 0.75} for mobilenetv2
    num_classes: 1000
    in_chans: 3
    backbone_weights: r18.safetensors  # optional: pretrained backbone weights (docs/backbones.md)
    stages:                       # one entry per stage, in order; omitted stages have no attention
      - attention: {type: se, rd_ratio: 0.0625}   # or null; aliases: {type: se, reduction: 16}
        position: post_bn         # pre | mid | post_bn | post_add | identity
        blocks: all               # all | first | last | [block indices]
        conv: standard            # standard | rfaconv | rfcaconv | rfcbamconv ({type: ..., **hp})
        fusion: none              # none | sda (or {type: sda, **hp})

:func:`canonicalize` resolves a spec against its backbone's layout (defaults written out, block
selections resolved, settings that cannot matter dropped) and validates it; :func:`spec_hash`
hashes the canonical form (:func:`hash_json`), so two specs that build the same network share a
hash. ``backbone_weights`` is not part of the hash (the architecture is the same; the file's
SHA-256 joins the study fingerprint and the model card instead). Module hyperparameters are canonical under the zoo's shared names; the names of the papers
(CA's ``reduction``, ECA's ``k_size``, ...) are accepted as aliases. The user
reference (every key, the positions per backbone, canonical form and hash rules) is docs/spec.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_attn.backbones import BLOCK_KEYWORDS, DEFAULT_POSITION, POSITIONS, resolve_blocks
from nas_attn.errors import SpecError

if TYPE_CHECKING:
    from nas_attn.backbones import StageInfo
    from nas_attn.modules import ModuleEntry

STAGE_KEYS = ("attention", "position", "blocks", "conv", "fusion")
SPEC_KEYS = ("backbone", "backbone_args", "backbone_weights", "num_classes", "in_chans", "stages")


@dataclass(frozen=True)
class ModuleChoice:
    """A registered module with its hyperparameters, e.g. ``{type: se, rd_ratio: 0.25}``."""

    type: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **{k: _plain(v) for k, v in self.params.items()}}


@dataclass(frozen=True)
class StageSpec:
    attention: ModuleChoice | None = None
    position: str = DEFAULT_POSITION
    blocks: str | tuple[int, ...] = "all"
    conv: ModuleChoice | None = None  # None = standard conv
    fusion: ModuleChoice | None = None  # None = no fusion

    def to_dict(self) -> dict[str, Any]:
        return {
            "attention": self.attention.to_dict() if self.attention else None,
            "position": self.position,
            "blocks": self.blocks if isinstance(self.blocks, str) else list(self.blocks),
            "conv": self.conv.to_dict() if self.conv else "standard",
            "fusion": self.fusion.to_dict() if self.fusion else "none",
        }

    @property
    def is_plain(self) -> bool:
        return self.attention is None and self.conv is None and self.fusion is None


@dataclass(frozen=True)
class ArchSpec:
    backbone: str
    num_classes: int = 10
    in_chans: int = 3
    stages: tuple[StageSpec, ...] = ()
    backbone_args: Mapping[str, Any] = field(default_factory=dict)
    backbone_weights: str | None = None  # a weights file build_model loads into the backbone

    def to_dict(self) -> dict[str, Any]:
        d = {
            "backbone": self.backbone,
            "backbone_args": {k: _plain(v) for k, v in self.backbone_args.items()},
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "stages": [s.to_dict() for s in self.stages],
        }
        if self.backbone_weights is not None:
            d["backbone_weights"] = self.backbone_weights
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def hash(self) -> str:
        return spec_hash(self)


# ---------------------------------------------------------------------------------------------
# parsing


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _check_keys(d: Mapping[str, Any], allowed: Sequence[str], field: str) -> None:
    for k in d:
        if k not in allowed:
            raise SpecError(f"{field}.{k}" if field else str(k), k, "unknown key", allowed)


def _parse_choice(value: Any, field: str, none_words: tuple[str, ...]) -> ModuleChoice | None:
    if value is None or (isinstance(value, str) and value in none_words):
        return None
    if isinstance(value, str):
        return ModuleChoice(value, {})
    if isinstance(value, Mapping):
        if "type" not in value:
            raise SpecError(f"{field}.type", None, "missing module type")
        t = value["type"]
        if t is None or t in none_words:
            extra = [k for k in value if k != "type"]
            if extra:
                raise SpecError(f"{field}.{extra[0]}", value[extra[0]],
                                "hyperparameter given without a module")
            return None
        if not isinstance(t, str):
            raise SpecError(f"{field}.type", t, "expected a module name")
        return ModuleChoice(t, {k: v for k, v in value.items() if k != "type"})
    raise SpecError(field, value, "expected a module name, a mapping with 'type', or null")


def _parse_blocks(value: Any, field: str) -> str | tuple[int, ...]:
    if isinstance(value, str):
        if value not in BLOCK_KEYWORDS:
            raise SpecError(field, value, "unknown block selection", [*BLOCK_KEYWORDS, "[indices]"])
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, Sequence) and value and all(
        isinstance(i, int) and not isinstance(i, bool) for i in value
    ):
        return tuple(value)
    raise SpecError(field, value, "expected all, first, last or a non-empty list of block indices")


def _parse_stage(d: Any, field: str) -> StageSpec:
    if d is None:
        return StageSpec()
    if not isinstance(d, Mapping):
        raise SpecError(field, d, "expected a mapping with keys", STAGE_KEYS)
    _check_keys(d, STAGE_KEYS, field)
    position = d.get("position", DEFAULT_POSITION)
    if not isinstance(position, str) or position not in POSITIONS:
        raise SpecError(f"{field}.position", position, "unknown position", POSITIONS)
    return StageSpec(
        attention=_parse_choice(d.get("attention"), f"{field}.attention", ("none",)),
        position=position,
        blocks=_parse_blocks(d.get("blocks", "all"), f"{field}.blocks"),
        conv=_parse_choice(d.get("conv"), f"{field}.conv", ("standard", "none")),
        fusion=_parse_choice(d.get("fusion"), f"{field}.fusion", ("none",)),
    )


def _positive_int(v: Any, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise SpecError(field, v, "expected a positive integer")
    return v


def parse_spec(data: Mapping[str, Any] | ArchSpec) -> ArchSpec:
    """Parse a dict (as read from YAML/JSON) into an ArchSpec. Does not resolve or validate
    against the backbone; :func:`canonicalize` does that."""
    if isinstance(data, ArchSpec):
        return data
    if not isinstance(data, Mapping):
        raise SpecError("spec", data, "expected a mapping with keys", SPEC_KEYS)
    _check_keys(data, SPEC_KEYS, "")
    if "backbone" not in data:
        raise SpecError("backbone", None, "missing")
    if not isinstance(data["backbone"], str):
        raise SpecError("backbone", data["backbone"], "expected a backbone name")
    stages = data.get("stages") or []
    if not isinstance(stages, Sequence) or isinstance(stages, str):
        raise SpecError("stages", stages, "expected a list of stage entries")
    bargs = data.get("backbone_args") or {}
    if not isinstance(bargs, Mapping):
        raise SpecError("backbone_args", bargs, "expected a mapping")
    weights = data.get("backbone_weights")
    if weights is not None and (not isinstance(weights, str) or not weights):
        raise SpecError("backbone_weights", weights, "expected the path of a weights file "
                        "(.safetensors, or a torch state dict)")
    return ArchSpec(
        backbone=data["backbone"],
        num_classes=_positive_int(data.get("num_classes", 10), "num_classes"),
        in_chans=_positive_int(data.get("in_chans", 3), "in_chans"),
        stages=tuple(_parse_stage(s, f"stages[{i}]") for i, s in enumerate(stages)),
        backbone_args=dict(bargs),
        backbone_weights=weights,
    )


def weights_relative_to(data: Any, base_dir: Path) -> Any:
    """A spec read from a file in ``base_dir``, its ``backbone_weights`` path made absolute
    (a relative one is relative to the spec file)."""
    if isinstance(data, Mapping) and isinstance(data.get("backbone_weights"), str):
        from nas_attn.backbones.pretrained import resolve_path

        return {**data, "backbone_weights": resolve_path(data["backbone_weights"], base_dir)}
    return data


def load_spec(source: str | Path | Mapping[str, Any] | ArchSpec) -> ArchSpec:
    """A spec from an ArchSpec, a dict, or a YAML/JSON file path; returned canonical."""
    if isinstance(source, str | Path):
        from nas_attn.yamlio import load_yaml

        data = load_yaml(Path(source))
        if isinstance(data, Mapping) and "spec" in data and "backbone" not in data:
            data = data["spec"]  # an export bundle's or a trial's wrapper
        return canonicalize(weights_relative_to(data, Path(source).parent))
    return canonicalize(source)


# ---------------------------------------------------------------------------------------------
# canonical form and validation


def _lookup(name: str, kind: str, field: str) -> ModuleEntry:
    """The registry entry of module ``name``, which must be of ``kind``; SpecError otherwise."""
    from nas_attn.modules import MODULES, module_names

    if name in MODULES:
        entry = MODULES.get(name)
        if entry.kind == kind:
            return entry
        raise SpecError(field, name, f"{name} is a {entry.kind} module, not a {kind} module",
                        module_names(kind))  # type: ignore[arg-type]
    raise SpecError(field, name, f"unknown {kind} module",
                    module_names(kind))  # type: ignore[arg-type]


def _canonical_attention(st: StageSpec, info: StageInfo, si: int, backbone: str
                         ) -> tuple[ModuleChoice, str, str | tuple[int, ...]]:
    f = f"stages[{si}]"
    assert st.attention is not None
    entry = _lookup(st.attention.type, "gate", f"{f}.attention.type")
    params = entry.validate(st.attention.params, f"{f}.attention")
    position = st.position
    has = [i for i, b in enumerate(info.blocks) if position in b.positions]
    if not has:
        valid = [p for p in POSITIONS if any(p in b.positions for b in info.blocks)]
        raise SpecError(f"{f}.position", position,
                        f"{backbone} stage {si} has no blocks with this position", valid)
    n = len(info.blocks)
    chosen = resolve_blocks(st.blocks, n, f"{f}.blocks") if st.blocks != "all" else has
    for bi in chosen:
        blk = info.blocks[bi]
        if position not in blk.positions:
            raise SpecError(f"{f}.blocks", bi,
                            f"block {bi} of {backbone} stage {si} has no {position!r} position",
                            has)
        reason = entry.reason_invalid(blk.positions[position], **params)
        if reason:
            raise SpecError(f"{f}.attention", st.attention.to_dict(),
                            f"{entry.name} cannot go at {position} of stage {si} block {bi} "
                            f"({blk.positions[position]} channels): {reason}")
    blocks: str | tuple[int, ...] = "all" if chosen == has else tuple(chosen)
    return ModuleChoice(entry.name, params), position, blocks


def _canonical_conv(choice: ModuleChoice, info: StageInfo, si: int, backbone: str) -> ModuleChoice:
    f = f"stages[{si}].conv"
    entry = _lookup(choice.type, "conv", f)
    params = entry.validate(choice.params, f)
    for bi, blk in enumerate(info.blocks):
        if blk.conv is None:
            raise SpecError(f, entry.name,
                            f"{backbone} stage {si} block {bi} has no replaceable 3x3 conv",
                            ["standard"])
        cin, cout, stride = blk.conv
        reason = entry.reason_invalid(cin, cout, 3, stride, **params)
        if reason:
            raise SpecError(f, entry.name, f"stage {si} block {bi} ({cin}->{cout}, stride "
                            f"{stride}): {reason}")
    return ModuleChoice(entry.name, params)


def _canonical_fusion(choice: ModuleChoice, info: StageInfo, si: int, backbone: str
                      ) -> ModuleChoice:
    f = f"stages[{si}].fusion"
    entry = _lookup(choice.type, "fusion", f)
    params = entry.validate(choice.params, f)
    n = len(info.blocks)
    if not info.fusion:
        raise SpecError(f, entry.name,
                        info.fusion_reason or f"{backbone} stage {si} cannot be fused", ["none"])
    if n < 2:
        raise SpecError(f, entry.name,
                        f"{backbone} stage {si} has {n} block; {entry.name} needs at least 2",
                        ["none"])
    reason = entry.reason_invalid(info.channels, n, **params)
    if reason:
        raise SpecError(f, entry.name, f"stage {si}: {reason}")
    return ModuleChoice(entry.name, params)


def canonicalize(spec: Mapping[str, Any] | ArchSpec) -> ArchSpec:
    """Validate ``spec`` against its backbone and return its canonical form.

    Canonical form: one stage entry per backbone stage; every module's hyperparameters and the
    backbone arguments written out with defaults; ``blocks`` is ``"all"`` when it selects every
    block that has the position, else a sorted list of non-negative indices; a stage without
    attention has the default position and ``all`` blocks (they cannot change the network).
    Raises SpecError naming the stage, the module and the reason for any combination that
    cannot be built. Idempotent: ``canonicalize(canonicalize(s)) == canonicalize(s)``.
    """
    from nas_attn.backbones import BACKBONES

    spec = parse_spec(spec)
    if spec.backbone not in BACKBONES:
        raise SpecError("backbone", spec.backbone, "unknown backbone", sorted(BACKBONES))
    bb = BACKBONES.get(spec.backbone)
    bargs = bb.validate_args(spec.backbone_args)
    layout = bb.layout(bargs)
    if len(spec.stages) > len(layout):
        raise SpecError("stages", len(spec.stages),
                        f"{spec.backbone} has {len(layout)} stages", list(range(len(layout))))
    stages = list(spec.stages) + [StageSpec()] * (len(layout) - len(spec.stages))
    out: list[StageSpec] = []
    for si, (st, info) in enumerate(zip(stages, layout, strict=True)):
        attention = conv = fusion = None
        position: str = DEFAULT_POSITION
        blocks: str | tuple[int, ...] = "all"
        if st.attention is not None:
            attention, position, blocks = _canonical_attention(st, info, si, spec.backbone)
        if st.conv is not None:
            conv = _canonical_conv(st.conv, info, si, spec.backbone)
        if st.fusion is not None:
            fusion = _canonical_fusion(st.fusion, info, si, spec.backbone)
            last = len(info.blocks) - 1
            if attention is not None and position == "post_add" and (
                blocks == "all" or last in blocks
            ):
                raise SpecError(f"stages[{si}].position", position,
                                f"with {fusion.type} the output of stage {si}'s last block is "
                                "replaced by the fusion output, so a post_add module there "
                                "would never run; select other blocks or another position",
                                [p for p in POSITIONS if p != "post_add"])
        out.append(StageSpec(attention, position, blocks, conv, fusion))
    return ArchSpec(spec.backbone, spec.num_classes, spec.in_chans, tuple(out), bargs,
                    spec.backbone_weights)


def hash_json(spec: Mapping[str, Any] | ArchSpec) -> str:
    """The JSON :func:`spec_hash` hashes: the canonical form, except that a hyperparameter
    renamed to the zoo's shared vocabulary is written under the name (and in the units) hashes
    were first computed with (``Alias.hashed``: CA's ``reduction``, ECA's ``k_size``, GC's
    ``ratio``, CBAM's ``spatial_kernel``), so hashes of existing runs and bundles still hold."""
    from nas_attn.modules import MODULES

    d = canonicalize(spec).to_dict()
    d.pop("backbone_weights", None)
    for stage in d["stages"]:
        for slot in ("attention", "conv", "fusion"):
            choice = stage[slot]
            if isinstance(choice, dict):
                params = {k: v for k, v in choice.items() if k != "type"}
                hp = MODULES.get(choice["type"]).hparams
                stage[slot] = {"type": choice["type"], **hp.hash_form(params)}
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def spec_hash(spec: Mapping[str, Any] | ArchSpec, length: int = 16) -> str:
    """Stable hash of the canonical form: equal for specs that build the same network (and
    unchanged by the shared-vocabulary rename, see :func:`hash_json`)."""
    return hashlib.sha256(hash_json(spec).encode()).hexdigest()[:length]


def build_model(spec: str | Path | Mapping[str, Any] | ArchSpec):
    """Build the ``nn.Module`` of a spec given as ArchSpec, dict, or YAML/JSON file path."""
    from nas_attn.backbones import get_backbone

    canon = load_spec(spec)
    model = get_backbone(canon.backbone).build(canon)
    model.spec = canon  # type: ignore[attr-defined]
    model.pretrained = None  # type: ignore[attr-defined]
    on_meta = any(p.is_meta for p in model.parameters())
    if canon.backbone_weights is not None and not on_meta:  # a meta network holds no weights
        from nas_attn.backbones.pretrained import load_backbone_weights

        model.pretrained = load_backbone_weights(model, canon.backbone_weights)  # type: ignore[attr-defined]
    return model
