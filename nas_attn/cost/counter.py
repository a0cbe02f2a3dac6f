"""Count FLOPs of one forward pass with a TorchDispatchMode over the handler table.

Every aten op the forward runs passes through :class:`FlopCounter`; it looks up the op's handler
in :data:`~nas_attn.cost.handlers.FLOP_HANDLERS`, skips :data:`~nas_attn.cost.handlers.FREE_OPS`
and records anything else as unhandled. Works on meta tensors (shapes only, no compute), which is
how specs are profiled. Attribution to attention: forward pre/post hooks on the attention modules
keep a stack; an op that runs while the stack is non-empty belongs to its outermost module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nas_attn.cost.handlers import CONV_LINEAR_OPS, FLOP_HANDLERS, FREE_OPS, op_name


def _bn_meta(x: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, ...]:
    """Shapes of native_batch_norm on meta tensors: (out, save_mean, save_invstd)."""
    c = x.shape[1]
    return (torch.empty_like(x), x.new_empty((c,)), x.new_empty((c,)))


META_SHORTCUTS: dict[Any, Any] = {torch.ops.aten.native_batch_norm.default: _bn_meta}
"""Ops whose meta kernel is a slow Python decomposition: on meta inputs the counter makes
outputs of the right shapes directly (tests compare them with the real meta kernel)."""


_INPLACE_FILLS = frozenset(
    getattr(torch.ops.aten, n)
    for n in ("normal_", "uniform_", "zero_", "fill_", "erfinv_", "exponential_", "random_",
              "bernoulli_", "mul_", "add_", "clamp_", "copy_")
)  # packets: every overload of these keeps the shape of its first argument


class MetaInitMode(TorchDispatchMode):
    """Skips weight initialisation on meta tensors while a model is built: these in-place,
    shape-preserving fills have nothing to fill there, but their meta kernels are slow Python
    decompositions (kaiming_normal_ is half of building a ResNet on meta)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        if func.overloadpacket in _INPLACE_FILLS and args and getattr(args[0], "is_meta", False):
            return args[0]
        return func(*args, **(kwargs or {}))


class FlopCounter(TorchDispatchMode):
    """Accumulates FLOPs per op, split into attention and backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.by_op: Counter[str] = Counter()
        self.by_module: Counter[str] = Counter()
        self.attention = 0
        self.backbone = 0
        self.conv_linear_macs = 0
        self.unhandled: Counter[str] = Counter()
        self._stack: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        shortcut = META_SHORTCUTS.get(func)
        if shortcut is not None and args and getattr(args[0], "is_meta", False):
            out = shortcut(*args, **kwargs)
        else:
            out = func(*args, **kwargs)
        name = op_name(func)
        handler = FLOP_HANDLERS.get(name)
        if handler is None:
            if name not in FREE_OPS:
                self.unhandled[name] += 1
            return out
        flops = int(handler(args, kwargs, out))
        if flops:
            self.by_op[name] += flops
            if name in CONV_LINEAR_OPS:
                self.conv_linear_macs += flops
            if self._stack:
                self.attention += flops
                self.by_module[self._stack[0]] += flops
            else:
                self.backbone += flops
        return out

    @property
    def total(self) -> int:
        return self.attention + self.backbone

    def watch(self, modules: Iterable[tuple[str, nn.Module]]) -> list[Any]:
        """Hook ``modules`` so the ops they run count as attention; returns the hook handles."""
        handles = []
        for qualname, module in modules:
            handles.append(module.register_forward_pre_hook(self._enter(qualname)))
            handles.append(module.register_forward_hook(self._leave, always_call=True))
        return handles

    def _enter(self, qualname: str):
        def hook(module: nn.Module, args: Any) -> None:
            self._stack.append(qualname)

        return hook

    def _leave(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._stack:
            self._stack.pop()


def count_forward(
    model: nn.Module,
    inputs: tuple[Any, ...],
    attention: Iterable[tuple[str, nn.Module]] = (),
) -> FlopCounter:
    """Run ``model(*inputs)`` once under no_grad inside a counter; hooks removed afterwards."""
    counter = FlopCounter()
    handles = counter.watch(attention)
    try:
        with torch.no_grad(), counter:
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return counter
