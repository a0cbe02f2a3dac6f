"""Backbone registry and the layout description the spec validator reads.

A backbone is registered with two functions:

- ``layout(backbone_args) -> tuple[StageInfo, ...]``: cheap, builds nothing. Says, for every block
  of every stage, which insertion positions exist and how many channels flow there, whether the
  block's spatial 3x3 conv can be replaced (and its in/out channels and stride), and whether a
  fusion module may wrap the stage. The spec validator works from this alone.
- ``build(spec) -> nn.Module``: builds the network of a canonical, validated ArchSpec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from nas_attn.backbones.positions import POSITIONS
from nas_attn.hparams import HParam, HParamSet
from nas_attn.registry import Registry

if TYPE_CHECKING:
    from nas_attn.arch import ArchSpec

__all__ = ["BACKBONES", "POSITIONS", "BackboneEntry", "BlockInfo", "StageInfo", "get_backbone",
           "register_backbone", "shipped_backbones"]


@dataclass(frozen=True)
class BlockInfo:
    """One block: ``positions`` maps each position the block has to the channels there;
    ``conv`` is ``(in_channels, out_channels, stride)`` of its replaceable 3x3 conv, or None."""

    positions: Mapping[str, int]
    conv: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class StageInfo:
    blocks: tuple[BlockInfo, ...]
    channels: int  # output channels of the stage
    fusion: bool = True  # a fusion module (SDA) may wrap this stage
    fusion_reason: str = ""  # why not, when fusion is False


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    build: Callable[[ArchSpec], nn.Module]
    layout: Callable[[Mapping[str, Any]], tuple[StageInfo, ...]]
    hparams: HParamSet = field(default_factory=HParamSet)
    input_size: tuple[int, int, int] = (3, 224, 224)  # natural input; C is replaced by in_chans
    description: str = ""


BACKBONES: Registry[BackboneEntry] = Registry("backbone")


def register_backbone(
    name: str,
    *,
    build: Callable[[ArchSpec], nn.Module],
    layout: Callable[[Mapping[str, Any]], tuple[StageInfo, ...]],
    hparams: tuple[HParam, ...] = (),
    input_size: tuple[int, int, int] = (3, 224, 224),
    description: str = "",
) -> BackboneEntry:
    return BACKBONES.register(
        name,
        BackboneEntry(name, build, layout, HParamSet(tuple(hparams)), input_size, description),
    )


def shipped_backbones() -> list[str]:
    """The backbones nas-attn itself registers (not those a user or a test adds)."""
    return [n for n, e in BACKBONES.items() if e.build.__module__.startswith("nas_attn.backbones")]


def get_backbone(name: str, field: str = "backbone") -> BackboneEntry:
    return BACKBONES.get(name, field)
