"""``profile()``: params, FLOPs with every attention op counted, optional measured latency.

Specs are built under ``torch.device("meta")`` (no weights allocated, nothing computed) and
counted on meta tensors, then cached by (spec hash, input size, batch size, the handler table:
a handler registered later is used at once). A given model runs
once in ``eval()`` under no_grad on a zero input of batch 1; its training flags are restored and,
because it runs in eval mode, its BatchNorm running statistics never change.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas_attn.cost.counter import FlopCounter, MetaInitMode, count_forward
from nas_attn.errors import ConfigError, NasAttnError

CACHE_SIZE = 4096
_CACHE: OrderedDict[tuple[Any, ...], ProfileResult] = OrderedDict()


class UnhandledOpsError(NasAttnError):
    """``profile(strict=True)`` met aten ops that have no FLOP handler and are not free."""

    def __init__(self, ops: Sequence[str]) -> None:
        self.ops = tuple(ops)
        super().__init__(
            "no FLOP handler for " + ", ".join(self.ops)
            + " (add one with nas_attn.cost.register_flop_handler, or FREE_OPS.add(name))"
        )


@dataclass(frozen=True)
class ProfileResult:
    """Cost of one network, per image (counted at batch 1; ``batch_size`` is for latency).

    Convention: one multiply-add = 1 FLOP (fvcore); see :mod:`nas_attn.cost.handlers`.

    - ``flops`` = ``backbone_flops`` + ``attention_flops``: every counted op. Attention is
      everything run inside a module of ``model.attention_modules()`` (gates, replacement convs
      and fusion modules alike), backbone the rest.
    - ``conv_linear_macs``: multiply-adds of convolutions and linear layers alone (whole model),
      the number papers publish (plain ResNet-50 at 224: 4,089,184,256).
    - ``by_op``: FLOPs per aten op; ``by_module``: FLOPs per attention module (qualified name).
    - ``latency_ms``: median of ``latency_repeats`` timed forward passes of ``batch_size``
      images on ``device`` (None unless asked for).
    - ``unhandled``: aten ops met that have neither a handler nor a place in ``FREE_OPS``
      (counted as 0).
    """

    params: int
    attention_params: int
    flops: int
    backbone_flops: int
    attention_flops: int
    conv_linear_macs: int
    input_size: tuple[int, ...]
    by_op: dict[str, int] = field(default_factory=dict)
    by_module: dict[str, int] = field(default_factory=dict)
    batch_size: int = 1
    latency_ms: float | None = None
    latency_repeats: int | None = None
    device: str | None = None
    unhandled: tuple[str, ...] = ()
    spec_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["unhandled"] = list(self.unhandled)
        return d

    def copy(self) -> ProfileResult:
        return replace(self, by_op=dict(self.by_op), by_module=dict(self.by_module))


# ---------------------------------------------------------------------------------------------
# helpers


def _check_size(input_size: Any, field: str = "input_size") -> tuple[int, ...]:
    try:
        size = tuple(input_size)
    except TypeError:
        raise ConfigError(field, input_size, "expected (channels, height, width)") from None
    if len(size) != 3 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size
    ):
        raise ConfigError(field, input_size, "expected three positive integers (C, H, W)")
    return size


def _check_positive(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, value, "expected a positive integer")
    return value


def _check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError("device", device, "not a torch device", ["cpu", "cuda"]) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", device, "CUDA is not available here", ["cpu"])
    if dev.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ConfigError("device", device, "cannot time on this device", ["cpu", "cuda"])
    return dev


def _zoo_classes() -> set[type]:
    from nas_attn.modules import MODULES

    return {entry.cls for _, entry in MODULES.items()}


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose ops count as attention: ``model.attention_modules()`` when the model
    has it, the whole model when it is itself a zoo module, else none."""
    found = getattr(model, "attention_modules", None)
    if callable(found):
        return list(found())
    if type(model) in _zoo_classes():
        return [(type(model).__name__, model)]
    return []


def _param_counts(model: nn.Module, attention: Sequence[tuple[str, nn.Module]]) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    seen: dict[int, int] = {}
    for _, m in attention:
        for p in m.parameters():
            seen[id(p)] = p.numel()
    return total, sum(seen.values())


def _result(
    model: nn.Module,
    counter: FlopCounter,
    attention: Sequence[tuple[str, nn.Module]],
    input_size: tuple[int, ...],
    batch_size: int,
    strict: bool,
    spec_hash: str | None = None,
) -> ProfileResult:
    unhandled = tuple(sorted(counter.unhandled))
    if unhandled:
        if strict:
            raise UnhandledOpsError(unhandled)
        warnings.warn(
            f"cost model: no FLOP handler for {', '.join(unhandled)}; counted as 0",
            stacklevel=3,
        )
    params, attention_params = _param_counts(model, attention)
    return ProfileResult(
        params=params,
        attention_params=attention_params,
        flops=counter.total,
        backbone_flops=counter.backbone,
        attention_flops=counter.attention,
        conv_linear_macs=counter.conv_linear_macs,
        input_size=input_size,
        by_op=dict(counter.by_op.most_common()),
        by_module=dict(counter.by_module),
        batch_size=batch_size,
        unhandled=unhandled,
        spec_hash=spec_hash,
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model: nn.Module,
    inputs: tuple[Any, ...],
    device: torch.device,
    repeats: int = 20,
    warmup: int = 3,
) -> float:
    """Median wall time (ms) of ``repeats`` forward passes under inference mode, after
    ``warmup`` untimed ones. ``model`` and ``inputs`` must already be on ``device``."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(*inputs)
        _synchronize(device)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(*inputs)
            _synchronize(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def _training_flags(model: nn.Module) -> dict[nn.Module, bool]:
    return {m: m.training for m in model.modules()}


def _restore(flags: Mapping[nn.Module, bool]) -> None:
    for m, training in flags.items():
        m.training = training


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


# ---------------------------------------------------------------------------------------------
# public


def profile(
    spec_or_model: nn.Module | Mapping[str, Any] | str | Path | Any,
    input_size: Sequence[int] | None = None,
    *,
    latency: bool | str = False,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    repeats: int = 20,
    warmup: int = 3,
    strict: bool = False,
) -> ProfileResult:
    """Params, FLOPs (split into backbone and attention, per op and per attention module),
    conv+linear multiply-adds and, with ``latency=True``, measured latency; with
    ``latency="lut:FILE"`` the latency a table predicts (:mod:`nas_attn.cost.latency_table`).

    ``spec_or_model``: an ArchSpec, a spec dict, a YAML/JSON spec file, or an ``nn.Module`` (a
    built network, a bare zoo module, any module). ``input_size`` is (C, H, W); by default the
    backbone's natural input for a spec and (3, 224, 224) for a module.

    Counting convention: one multiply-add = 1 FLOP (fvcore); elementwise ops 1 per output
    element; reductions 1 per input element; softmax 5 per element; batch norm in eval 2 per
    element, norms computing statistics 5 (+2 affine); pooling 1 per window element; data
    movement free. FLOPs are per image. Details: :mod:`nas_attn.cost.handlers`,
    docs/cost-model.md.

    Specs are counted on meta tensors and cached by (spec hash, input size, batch size and the
    state of the handler table, so ``register_flop_handler`` takes effect on the next call);
    latency is measured afresh on every call that asks for it. ``strict=True`` raises
    :class:`UnhandledOpsError` if an op had no handler (else it warns and counts it 0).
    """
    batch_size = _check_positive(batch_size, "batch_size")
    if isinstance(latency, str):
        return _predicted(spec_or_model, input_size, latency, strict)
    if latency:
        repeats = _check_positive(repeats, "repeats")
        dev = _check_device(device)
    if isinstance(spec_or_model, nn.Module):
        size = _check_size(input_size if input_size is not None else (3, 224, 224))
        result = _profile_model(spec_or_model, size, batch_size, strict)
        if latency:
            result = replace(result, **_model_latency(spec_or_model, size, batch_size, dev,
                                                      repeats, warmup))
        return result
    result, canon = _profile_spec(spec_or_model, input_size, batch_size, strict)
    if latency:
        from nas_attn.arch import build_model

        model = build_model(canon).to(dev).eval()
        x = torch.randn(batch_size, *result.input_size, device=dev)
        ms = measure_latency(model, (x,), dev, repeats, warmup)
        result = replace(result, latency_ms=ms, latency_repeats=repeats, device=str(dev))
    return result


def _predicted(spec: Any, input_size: Sequence[int] | None, latency: str, strict: bool
               ) -> ProfileResult:
    """``profile(spec, latency="lut:FILE")``: the counts, with the latency the table predicts
    at the table's batch and input size."""
    from nas_attn.cost.latency_table import load_table

    if not latency.startswith("lut:") or len(latency) == 4:
        raise ConfigError("latency", latency, "expected a boolean or a latency table",
                          [True, False, "lut:FILE"])
    if isinstance(spec, nn.Module):
        raise ConfigError("latency", latency, "a latency table predicts specs, not built "
                          "modules; pass the spec", [True, False])
    table = load_table(latency[4:])
    if input_size is not None and tuple(input_size) != table.input_size:
        raise ConfigError("input_size", list(input_size), f"the latency table {table.source} "
                          "was measured at another input size", [list(table.input_size)])
    batch = int(table.settings["batch"])
    result, canon = _profile_spec(spec, table.input_size, batch, strict)
    return replace(result, latency_ms=table.predict(canon), latency_repeats=None,
                   device=f"{table.settings['device']} ({table.settings['runtime']}, table)")


def _profile_spec(
    spec: Any, input_size: Sequence[int] | None, batch_size: int, strict: bool
) -> tuple[ProfileResult, Any]:
    from nas_attn.arch import ArchSpec, build_model, load_spec, spec_hash
    from nas_attn.backbones import get_backbone

    if not isinstance(spec, ArchSpec | Mapping | str | Path):
        raise ConfigError("spec_or_model", type(spec).__name__,
                          "expected an ArchSpec, a spec mapping, a spec file or an nn.Module")
    canon = load_spec(spec)
    h = spec_hash(canon)
    if input_size is None:
        natural = get_backbone(canon.backbone).natural_input_size(canon.backbone_args)
        size = (canon.in_chans, *natural[1:])
    else:
        size = _check_size(input_size)
        if size[0] != canon.in_chans:
            raise ConfigError("input_size", list(size),
                              f"the spec has in_chans={canon.in_chans}")
    key = (h, size, batch_size, _handler_table())
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        if strict and cached.unhandled:
            raise UnhandledOpsError(cached.unhandled)
        return cached.copy(), canon
    with torch.device("meta"):
        with MetaInitMode():
            model = build_model(canon).eval()
        x = torch.zeros(1, *size)
        attention = attention_modules(model)
        counter = count_forward(model, (x,), attention)
    result = _result(model, counter, attention, size, batch_size, strict, spec_hash=h)
    _CACHE[key] = result
    if len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result.copy(), canon


def _profile_model(
    model: nn.Module, size: tuple[int, ...], batch_size: int, strict: bool
) -> ProfileResult:
    flags = _training_flags(model)
    dev, dtype = _model_device_dtype(model)
    attention = attention_modules(model)
    try:
        model.eval()
        x = torch.zeros(1, *size, device=dev, dtype=dtype)
        counter = count_forward(model, (x,), attention)
    finally:
        _restore(flags)
    return _result(model, counter, attention, size, batch_size, strict)


def _model_latency(
    model: nn.Module,
    size: tuple[int, ...],
    batch_size: int,
    dev: torch.device,
    repeats: int,
    warmup: int,
) -> dict[str, Any]:
    own_dev, dtype = _model_device_dtype(model)
    target = model if own_dev == dev else copy.deepcopy(model).to(dev)
    flags = _training_flags(target)
    try:
        target.eval()
        x = torch.randn(batch_size, *size, device=dev, dtype=dtype)
        ms = measure_latency(target, (x,), dev, repeats, warmup)
    finally:
        _restore(flags)
    return {"latency_ms": ms, "latency_repeats": repeats, "device": str(dev)}


def profile_module(
    name: str,
    channels: int,
    size: Sequence[int] = (32, 32),
    hparams: Mapping[str, Any] | None = None,
    num_blocks: int = 2,
    strict: bool = False,
) -> ProfileResult:
    """Profile one zoo module alone, built on meta: a gate on (1, C, H, W); a conv module as
    C -> C, kernel 3, stride 1; a fusion module over ``num_blocks`` inputs of (1, C, H, W).
    Everything it computes is attention. Raises ConfigError when the module cannot be built."""
    from nas_attn.modules import get_module

    entry = get_module(name)
    channels = _check_positive(channels, "channels")
    h, w = (_check_positive(v, "size") for v in size)
    hp = dict(hparams or {})
    args: tuple[int, ...] = {
        "gate": (channels,),
        "conv": (channels, channels, 3, 1),
        "fusion": (channels, num_blocks),
    }[entry.kind]
    with torch.device("meta"):
        module = entry.build(*args, **hp).eval()
        x = [torch.zeros(1, channels, h, w) for _ in range(num_blocks if entry.kind == "fusion" else 1)]
        inputs = (x,) if entry.kind == "fusion" else (x[0],)
        attention = [(name, module)]
        counter = count_forward(module, inputs, attention)
    return _result(module, counter, attention, (channels, h, w), 1, strict)


def _handler_table() -> tuple[frozenset, frozenset]:
    """The FLOP handler table and the free ops, as part of the cache key: counts made with
    another table (before a ``register_flop_handler``) are never returned. The key holds the
    handlers themselves, not their ids, so a freed handler's id cannot be mistaken for it."""
    from nas_attn.cost.handlers import FLOP_HANDLERS, FREE_OPS

    return frozenset(FLOP_HANDLERS.items()), frozenset(FREE_OPS)


def clear_cache() -> None:
    """Forget every cached spec profile."""
    _CACHE.clear()


def cache_size() -> int:
    return len(_CACHE)
