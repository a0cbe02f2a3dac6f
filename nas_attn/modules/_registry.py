"""The zoo's registry: one entry per module family, registered under an explicit name.

Three kinds of module, each with its own constructor signature (the shared vocabulary):

- ``gate``:   attention applied at a position of a block. ``cls(channels, **hp)``; forward
              maps (N, C, H, W) to the same shape.
- ``conv``:   a replacement for a block's spatial 3x3 conv.
              ``cls(in_channels, out_channels, kernel_size=3, stride=1, **hp)``.
- ``fusion``: wraps a whole stage of ``num_blocks`` blocks. ``cls(channels, num_blocks, **hp)``;
              forward takes the list of the blocks' pre-activation outputs Z_i and returns the
              stage output.

Hyperparameters use the zoo's shared names (``rd_ratio``, ``rd_divisor``, ``kernel_size``);
``aliases`` lists the names of the paper or the reference code that a spec, a search space or a
study may use instead (:class:`nas_attn.hparams.Alias`).

``params`` is the exact parameter-count formula with the constructor's signature (tests check the
built module against it); ``check`` returns why a configuration cannot be built (for example
GroupNorm groups that do not divide the channels) or None.

A plugin's module (``nas_attn.plugins``) registers with the same decorator; for it ``params``,
``check`` and ``hparams`` are optional: without a formula :meth:`ModuleEntry.param_count` builds
the module on the meta device and counts, and no hyperparameters means nothing to search.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from nas_attn.errors import ConfigError
from nas_attn.hparams import Alias, HParam, HParamSet, validate_hparams
from nas_attn.registry import Registry

ModuleKind = Literal["gate", "conv", "fusion"]


@dataclass(frozen=True)
class ModuleEntry:
    name: str
    cls: type[nn.Module]
    kind: ModuleKind
    hparams: HParamSet
    params: Callable[..., int] | None
    check: Callable[..., str | None] | None = None
    paper: str = ""
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def validate(self, values: Mapping[str, Any], field: str) -> dict[str, Any]:
        return validate_hparams(self.hparams, values, field)

    def reason_invalid(self, *args: Any, **hp: Any) -> str | None:
        """Why this module cannot be built with these arguments, or None if it can. A module
        from outside the zoo (a plugin) is also run once on a small input of these channels,
        so an output of the wrong shape is refused with both shapes before any training."""
        reason = self.check(*args, **hp) if self.check is not None else None
        if reason is None and self.is_plugin:
            reason = self.shape_error(*args, **hp)
        return reason

    @property
    def is_plugin(self) -> bool:
        """Registered from outside the zoo's own files (a plugin, a test)."""
        return not self.cls.__module__.startswith("nas_attn.modules.")

    def shape_error(self, *args: Any, **hp: Any) -> str | None:
        """What is wrong with the shape of the module's output on a small input of these
        channels (both shapes named), or None; probed once per configuration."""
        return _shape_reason(self, args, hp)

    def param_count(self, *args: Any, **hp: Any) -> int:
        """Parameters of the module built with these arguments: the declared formula, or,
        without one, the module built on the meta device (no memory, no initialisation cost)."""
        hp = self.validate(hp, self.name)
        if self.params is not None:
            return int(self.params(*args, **hp))
        with torch.device("meta"):
            module = self.build(*args, **hp)
        return sum(p.numel() for p in module.parameters())

    def build(self, *args: Any, **hp: Any) -> nn.Module:
        hp = self.validate(hp, self.name)
        reason = self.reason_invalid(*args, **hp)
        if reason:
            raise ConfigError(self.name, hp, reason)
        return self.cls(*args, **hp)


MODULES: Registry[ModuleEntry] = Registry("attention module")

PROBE_SIZE = (8, 8)  # the spatial size of the shape probe of a plugin module
_PROBED: dict[tuple[Any, ...], str | None] = {}


def _shape_reason(entry: ModuleEntry, args: tuple[Any, ...], hp: dict[str, Any]) -> str | None:
    """Run the module on a (1, C, 8, 8) input (on the meta device, else on the CPU for a
    module meta cannot run) and say what is wrong with its output's shape, or None."""
    key = (entry.cls, args, repr(sorted(hp.items())))
    if key not in _PROBED:
        h, w = PROBE_SIZE
        n_in = args[1] if entry.kind == "fusion" else 1
        want: tuple[int, ...] = (1, args[0], h, w)
        if entry.kind == "conv":
            stride = args[3] if len(args) > 3 else 1
            want = (1, args[1], -(-h // stride), -(-w // stride))
        got: Any = None
        for device in ("meta", "cpu"):
            try:
                with torch.device(device), torch.no_grad():
                    module = entry.cls(*args, **hp).eval()
                    xs = [torch.zeros(1, args[0], h, w) for _ in range(n_in)]
                    y = module(xs) if entry.kind == "fusion" else module(xs[0])
                got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                break
            except Exception as e:
                got = f"{type(e).__name__}: {e}"
        inp = f"(1, {args[0]}, {h}, {w})" + (f" x {n_in}" if n_in > 1 else "")
        _PROBED[key] = (None if got == want else
                        f"fails on an input of {inp}: {got}" if isinstance(got, str) else
                        f"returns {got} for an input of {inp}; expected {want}")
    return _PROBED[key]


def register_module(
    name: str,
    *,
    kind: ModuleKind,
    hparams: tuple[HParam, ...] = (),
    aliases: tuple[Alias, ...] = (),
    params: Callable[..., int] | None = None,
    check: Callable[..., str | None] | None = None,
    paper: str = "",
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that registers a zoo (or plugin) module under ``name``; a name the
    registry already has is refused naming both files."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        MODULES.register(
            name,
            ModuleEntry(
                name=name,
                cls=cls,
                kind=kind,
                hparams=HParamSet(tuple(hparams), tuple(aliases)),
                params=params,
                check=check,
                paper=paper,
                variants=dict(variants or {}),
            ),
        )
        return cls

    return wrap


def get_module(name: str, kind: ModuleKind | None = None, field: str | None = None) -> ModuleEntry:
    """Look up a module; with ``kind``, unknown names list only the modules of that kind."""
    if kind is not None:
        names = module_names(kind)
        if name not in names:
            raise ConfigError(field or "type", name, f"unknown {kind} module", names)
    return MODULES.get(name, field)


def module_names(kind: ModuleKind | None = None) -> list[str]:
    return [n for n, e in MODULES.items() if kind is None or e.kind == kind]


def create_module(name: str, *args: Any, **hp: Any) -> nn.Module:
    """Build a registered module: ``create_module("se", 64, rd_ratio=0.25)``."""
    return get_module(name).build(*args, **hp)
