"""The cells of a network: the parts a latency table times one by one.

A built network (:class:`nas_attn.backbones._net.AttnNet`) runs as stem -> stages -> head, and a
stage as its blocks one after another. The cells of a spec are therefore:

- ``stem``: the input to the first stage's input;
- ``block``: one block of a stage without fusion, with what that block gets (its conv choice
  and its gates by position), at its input shape;
- ``stage``: a whole stage with a fusion module (its blocks run differently there);
- ``head``: the last stage's output to the logits.

That is the ``cell`` granularity. At the ``stage`` granularity (:data:`GRANULARITIES`) every
stage is one ``stage`` cell, whatever it holds: a network is then stem, stages and head, each
timed whole at its real input shape, so that what the runtime fuses or caches across the blocks
of a stage is in the timing (the block-level tables of ProxylessNAS and FBNet, one level up). A
fusion stage is the same cell at both granularities.

Each cell is described by a plain mapping (backbone, its arguments, where the cell sits, what it
holds, its input shape with the batch) and keyed by that mapping's hash, so two specs that share
a block share its cell. The whole network's latency is predicted from its cells' latencies in
:mod:`nas_attn.cost.latency_table`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

KINDS = ("stem", "block", "stage", "head")
GRANULARITIES = ("cell", "stage")


def check_granularity(granularity: Any, field: str = "granularity") -> str:
    """``granularity`` when it is one of :data:`GRANULARITIES`, else a ConfigError naming them."""
    if granularity not in GRANULARITIES:
        from nas_attn.errors import ConfigError

        raise ConfigError(field, granularity, "unknown latency-table granularity",
                          GRANULARITIES)
    return str(granularity)


@dataclass(frozen=True)
class Cell:
    """One timed part of a network: ``desc`` says what it is, ``key`` is its hash."""

    key: str
    desc: Mapping[str, Any]

    @property
    def label(self) -> str:
        d = self.desc
        where = {"stem": "stem", "head": "head", "stage": f"stage {d.get('stage')}",
                 "block": f"stage {d.get('stage')} block {d.get('block')}"}[d["kind"]]
        what = json.dumps(d.get("holds"), sort_keys=True) if d.get("holds") else ""
        return f"{d['backbone']} {where} {what}".strip()


def cell_key(desc: Mapping[str, Any]) -> str:
    blob = json.dumps(desc, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cell(**desc: Any) -> Cell:
    return Cell(cell_key(desc), desc)


class _Part(nn.Module):
    """The stem or the head of a network as a module of its own (for timing and export)."""

    def __init__(self, net: nn.Module, part: str) -> None:
        super().__init__()
        self.net = net
        self.part = part

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_stem(x) if self.part == "stem" else self.net.forward_head(x)


def _shapes(net: nn.Module, input_shape: Sequence[int], device: str | torch.device = "meta"
            ) -> dict[str, tuple[int, ...]]:
    """Input shape of every stage and block, and the last stage's output, from one pass of
    ``net`` (built on ``device``) over zeros (keys ``s{i}``, ``s{i}b{j}``, ``out``). A real
    device's pass is the cheaper one: the meta device runs every op's Python decomposition."""
    seen: dict[str, tuple[int, ...]] = {}

    def record(key: str) -> Any:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            seen.setdefault(key, tuple(args[0].shape))
        return hook

    def record_output(_module: nn.Module, _args: Any, out: torch.Tensor) -> None:
        seen["out"] = tuple(out.shape)

    stages = net.stages  # type: ignore[attr-defined]
    hooks = [stages[-1].register_forward_hook(record_output)]
    for i, stage in enumerate(stages):
        hooks.append(stage.register_forward_pre_hook(record(f"s{i}")))
        hooks += [b.register_forward_pre_hook(record(f"s{i}b{j}")) for j, b in enumerate(stage)]
    try:
        with torch.no_grad():
            net(torch.zeros(*input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
    return seen


def cells_with_modules(spec: Any, input_size: Sequence[int], batch: int = 1,
                       device: str | torch.device = "meta", granularity: str = "cell"
                       ) -> Iterator[tuple[Cell, nn.Module, tuple[int, ...]]]:
    """Every cell of ``spec`` (canonical) with the module that runs it and its input shape, at
    ``granularity`` (``cell``: blocks, ``stage``: whole stages; see the module doc).

    ``device="meta"`` builds nothing real (for the cells alone); timing needs ``"cpu"`` or a
    GPU. The modules belong to one freshly built network in eval mode."""
    from nas_attn.arch import build_model, load_spec
    from nas_attn.backbones import get_backbone
    from nas_attn.backbones._net import block_plans

    check_granularity(granularity)
    canon = load_spec(spec)
    shape = (batch, *input_size)
    with torch.device(device):
        net = build_model(canon).eval()
    if not getattr(net, "has_cells", True):
        from nas_attn.backbones import shipped_backbones
        from nas_attn.errors import ConfigError

        raise ConfigError("backbone", canon.backbone, "runs as one piece (its forward is "
                          "the user's), so it has no stem/block/head cells to time; latency "
                          "tables cover", shipped_backbones())
    shapes = _shapes(net, shape, device)
    base = {"backbone": canon.backbone, "backbone_args": dict(canon.backbone_args)}
    yield (_cell(kind="stem", **base, in_chans=canon.in_chans, input=list(shape)),
           _Part(net, "stem"), shape)
    infos = get_backbone(canon.backbone).layout(canon.backbone_args)
    for i, (stage, st, info) in enumerate(zip(net.stages, canon.stages, infos, strict=True)):
        if st.fusion is not None or granularity == "stage":
            yield (_cell(kind="stage", **base, stage=i, holds=st.to_dict(),
                         input=list(shapes[f"s{i}"])), stage, shapes[f"s{i}"])
            continue
        for j, (block, plan) in enumerate(zip(stage, block_plans(st, info), strict=True)):
            holds = {"conv": plan.conv.to_dict() if plan.conv else "standard",
                     "gates": {p: c.to_dict() for p, c in sorted(plan.gates.items())}}
            yield (_cell(kind="block", **base, stage=i, block=j, holds=holds,
                         input=list(shapes[f"s{i}b{j}"])), block, shapes[f"s{i}b{j}"])
    yield (_cell(kind="head", **base, num_classes=canon.num_classes, input=list(shapes["out"])),
           _Part(net, "head"), shapes["out"])


def spec_cells(spec: Any, input_size: Sequence[int], batch: int = 1,
               granularity: str = "cell") -> list[Cell]:
    """The cells of ``spec`` in forward order at ``granularity`` (nothing real is built)."""
    return [c for c, _, _ in cells_with_modules(spec, input_size, batch,
                                                granularity=granularity)]
