"""Backbone registry and the layout description the spec validator reads.

A backbone is registered with two functions:

- ``layout(backbone_args) -> tuple[StageInfo, ...]``: cheap, builds nothing. Says, for every block
  of every stage, which insertion positions exist and how many channels flow there, whether the
  block's spatial 3x3 conv can be replaced (and its in/out channels and stride), and whether a
  fusion module may wrap the stage. The spec validator works from this alone.
- ``build(spec) -> nn.Module``: builds the network of a canonical, validated ArchSpec.

A backbone whose arguments are more than hyperparameters (the ``factory`` backbone: a user's
``module:function``, its keyword arguments and insertion patterns) registers ``check_args``
(the arguments -> their canonical form, ConfigError naming the field) and ``input_size_of``
(its natural input, which then depends on the arguments) instead of ``hparams``.
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
    check_args: Callable[[Mapping[str, Any], str], dict[str, Any]] | None = None
    input_size_of: Callable[[Mapping[str, Any]], tuple[int, int, int]] | None = None

    def validate_args(self, args: Mapping[str, Any], field: str = "backbone_args"
                      ) -> dict[str, Any]:
        """The canonical ``backbone_args``: ``check_args`` where the backbone has one, else its
        hyperparameters with defaults written out (ConfigError naming ``field.key``)."""
        if self.check_args is not None:
            return self.check_args(args, field)
        from nas_attn.hparams import validate_hparams

        return validate_hparams(self.hparams, args, field)

    def natural_input_size(self, args: Mapping[str, Any]) -> tuple[int, int, int]:
        """The input the backbone is made for (C is replaced by the spec's in_chans)."""
        if self.input_size_of is not None:
            return self.input_size_of(self.validate_args(args))
        return self.input_size


BACKBONES: Registry[BackboneEntry] = Registry("backbone")


def register_backbone(
    name: str,
    *,
    build: Callable[[ArchSpec], nn.Module],
    layout: Callable[[Mapping[str, Any]], tuple[StageInfo, ...]],
    hparams: tuple[HParam, ...] = (),
    input_size: tuple[int, int, int] = (3, 224, 224),
    description: str = "",
    check_args: Callable[[Mapping[str, Any], str], dict[str, Any]] | None = None,
    input_size_of: Callable[[Mapping[str, Any]], tuple[int, int, int]] | None = None,
) -> BackboneEntry:
    return BACKBONES.register(
        name,
        BackboneEntry(name, build, layout, HParamSet(tuple(hparams)), input_size, description,
                      check_args, input_size_of),
    )


def shipped_backbones() -> list[str]:
    """The networks nas-attn itself defines (not those a user or a test adds, nor ``factory``,
    which builds the user's own network and has no network without its arguments)."""
    return [n for n, e in BACKBONES.items()
            if e.build.__module__.startswith("nas_attn.backbones") and e.check_args is None]


def get_backbone(name: str, field: str = "backbone") -> BackboneEntry:
    return BACKBONES.get(name, field)
