"""The conformance kit: ``check_module(name_or_class)`` runs every check a zoo module passes.

Usable from a user's own pytest suite (it raises :class:`ConformanceError`, an AssertionError,
with the whole report) and as ``nas-attn zoo --check NAME``. The zoo's own modules run through
it in the suite (tests/test_conformance.py), so the kit is tested by the zoo and the zoo by
the kit. Checks, on tiny tensors:

- ``shape``: the output shape at several channel counts, spatial sizes (one not square, one
  odd) and batch sizes, in eval mode and (from batch 2) train mode; gates keep their input's
  shape, conv modules give ``out_channels`` at ``ceil(H / stride)``, fusion modules the stage's
  shape; outputs finite;
- ``params``: the declared parameter formula against the built module (without a formula the
  count is the built module's, nothing to compare);
- ``flops``: every op the dispatcher counter meets has a FLOP handler (strict: the report names
  the op it cannot count);
- ``gradient``: a gradient reaches the input and every parameter;
- ``determinism``: two eval-mode passes on one input agree exactly;
- ``onnx``: the export nas-attn bundles use (``nas_attn.onnx_export``) agrees with onnxruntime,
  at one shape (``onnx_size``, default the last of ``sizes``);
- ``positions``: the module works in a small network at every position of its kind (a gate at
  pre/mid/post_bn/post_add/identity, a conv module as the blocks' 3x3 conv, a fusion module
  over a stage), forward and backward.

A configuration the module's own ``check()`` refuses at a width is skipped there, not failed.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas_attn.errors import ConfigError
from nas_attn.hparams import HParamSet
from nas_attn.modules import MODULES, ModuleEntry, get_module

CHANNELS = (8, 16, 24)
SIZES = ((8, 8), (7, 5))
BATCHES = (1, 3)
NUM_BLOCKS = 3
GATE_POSITIONS = ("pre", "mid", "post_bn", "post_add", "identity")
CHECKS = ("shape", "params", "flops", "gradient", "determinism", "onnx", "positions")


@dataclass(frozen=True)
class Failure:
    check: str  # one of CHECKS
    where: str  # "channels=16 size=7x5 batch=3", "stage 1 position post_add", ...
    message: str

    def __str__(self) -> str:
        return f"FAIL {self.check} [{self.where}]: {self.message}"


@dataclass
class Report:
    """What :func:`check_module` found: the checks run, the failures, what was skipped."""

    module: str
    kind: str
    ran: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def failed_checks(self) -> list[str]:
        return sorted({f.check for f in self.failures})

    def __str__(self) -> str:
        bad = self.failed_checks()
        head = (f"check_module({self.module!r}, kind {self.kind}): "
                + (f"{len(bad)} of {len(self.ran)} checks failed ({', '.join(bad)})" if bad
                   else f"all {len(self.ran)} checks passed"))
        lines = [head, *(f"  {f}" for f in self.failures)]
        passed = [c for c in self.ran if c not in bad]
        if passed:
            lines.append(f"  ok: {', '.join(passed)}")
        lines += [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "kind": self.kind, "ok": self.ok, "ran": self.ran,
                "failures": [vars(f) for f in self.failures], "skipped": self.skipped}


class ConformanceError(AssertionError):
    """A module failed the kit; ``report`` holds every failure with where and the shapes."""

    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__(str(report))


def check_module(
    name_or_class: str | type[nn.Module],
    hparams: Mapping[str, Any] | None = None,
    *,
    kind: str | None = None,
    channels: Sequence[int] = CHANNELS,
    sizes: Sequence[tuple[int, int]] = SIZES,
    batches: Sequence[int] = BATCHES,
    onnx: bool = True,
    onnx_size: tuple[int, int] | None = None,
    positions: bool = True,
    raise_on_failure: bool = True,
) -> Report:
    """Run the kit on a registered module (by name or class), or on an unregistered class
    with ``kind`` (then without the ``positions`` check, which needs the registry).

    Raises :class:`ConformanceError` with the report when a check fails (unless
    ``raise_on_failure=False``); returns the report otherwise."""
    entry = _entry(name_or_class, kind)
    hp = entry.validate(dict(hparams or {}), entry.name)
    report = Report(entry.name, entry.kind)
    widths = _buildable_widths(entry, hp, channels, report)
    if not widths:
        report.failures.append(Failure("shape", f"channels={list(channels)}",
                                       "the module's check() refuses every channel count"))
        report.ran.append("shape")
    else:
        _run(report, "shape", lambda: _check_shapes(entry, hp, widths, sizes, batches))
        _run(report, "params", lambda: _check_params(entry, hp, widths))
        _run(report, "flops", lambda: _check_flops(entry, hp, widths[0], sizes[0]))
        _run(report, "gradient", lambda: _check_gradient(entry, hp, widths[0], sizes[-1]))
        _run(report, "determinism", lambda: _check_determinism(entry, hp, widths[0], sizes[-1]))
        if onnx:
            at = tuple(onnx_size or sizes[-1])
            _run(report, "onnx", lambda: _check_onnx(entry, hp, widths[0], at))  # type: ignore
        if positions and entry.name in MODULES and MODULES.get(entry.name) is entry:
            _run(report, "positions", lambda: _check_positions(entry, hp, report.skipped))
        elif positions:
            report.skipped.append("positions (the class is not registered)")
    if raise_on_failure and not report.ok:
        raise ConformanceError(report)
    return report


def _entry(name_or_class: str | type[nn.Module], kind: str | None) -> ModuleEntry:
    if isinstance(name_or_class, str):
        return get_module(name_or_class, field="module")
    for _, e in MODULES.items():
        if e.cls is name_or_class:
            return e
    if kind not in ("gate", "conv", "fusion"):
        raise ConfigError("kind", kind, f"{name_or_class.__name__} is not registered: say "
                          "which kind of module it is", ["gate", "conv", "fusion"])
    return ModuleEntry(name_or_class.__name__, name_or_class, kind,  # type: ignore[arg-type]
                       HParamSet(), None)


def _run(report: Report, check: str, fn: Callable[[], list[Failure]]) -> None:
    report.ran.append(check)
    try:
        report.failures += fn()
    except Exception as e:  # a check that crashes is a failure of that check, not of the kit
        report.failures.append(Failure(check, "running the check", f"{type(e).__name__}: {e}"))


def _args(entry: ModuleEntry, c: int, stride: int = 1) -> tuple[int, ...]:
    if entry.kind == "gate":
        return (c,)
    if entry.kind == "conv":
        return (c, 2 * c, 3, stride)
    return (c, NUM_BLOCKS)


def _buildable_widths(entry: ModuleEntry, hp: Mapping[str, Any], channels: Sequence[int],
                      report: Report) -> list[int]:
    widths = []
    for c in channels:
        reason = entry.check(*_args(entry, c), **hp) if entry.check is not None else None
        if reason:
            report.skipped.append(f"channels={c}: {reason}")
        else:
            widths.append(c)
    return widths


def _build(entry: ModuleEntry, hp: Mapping[str, Any], c: int, stride: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return entry.cls(*_args(entry, c, stride), **hp)


def _inputs(entry: ModuleEntry, c: int, n: int, h: int, w: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(n * 1000 + c)
    count = NUM_BLOCKS if entry.kind == "fusion" else 1
    return [torch.randn(n, c, h, w, generator=g) for _ in range(count)]


def _call(entry: ModuleEntry, module: nn.Module, xs: list[torch.Tensor]) -> Any:
    return module(xs) if entry.kind == "fusion" else module(xs[0])


def _expected(entry: ModuleEntry, c: int, n: int, h: int, w: int, stride: int) -> tuple:
    if entry.kind == "conv":
        return (n, 2 * c, math.ceil(h / stride), math.ceil(w / stride))
    return (n, c, h, w)


def _shape(y: Any) -> Any:
    return tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__


def _check_shapes(entry: ModuleEntry, hp: Mapping[str, Any], widths: Sequence[int],
                  sizes: Sequence[tuple[int, int]], batches: Sequence[int]) -> list[Failure]:
    """The first failing case of each width (and stride), so a report stays readable."""
    out: list[Failure] = []
    for stride in (1, 2) if entry.kind == "conv" else (1,):
        for c in widths:
            module = _build(entry, hp, c, stride)
            for (h, w), n in itertools.product(sizes, batches):
                failure = _shape_case(entry, module, c, h, w, n, stride)
                if failure is not None:
                    out.append(failure)
                    break
    return out


def _shape_case(entry: ModuleEntry, module: nn.Module, c: int, h: int, w: int, n: int,
                stride: int) -> Failure | None:
    where = f"channels={c} size={h}x{w} batch={n}" + (
        f" stride={stride}" if entry.kind == "conv" else "")
    xs = _inputs(entry, c, n, h, w)
    want = _expected(entry, c, n, h, w, stride)
    # train mode from batch 2: BatchNorm after a global pool cannot train on one image
    for mode in ("train", "eval") if n > 1 else ("eval",):
        module.train(mode == "train")
        try:
            with torch.no_grad():
                y = _call(entry, module, xs)
        except Exception as e:
            return Failure("shape", f"{where} {mode}",
                           f"input {tuple(xs[0].shape)}: {type(e).__name__}: {e}")
        if _shape(y) != want:
            return Failure("shape", f"{where} {mode}", f"input {tuple(xs[0].shape)}: output "
                           f"{_shape(y)}, expected {want}")
        if not torch.isfinite(y).all():
            return Failure("shape", f"{where} {mode}", "output has non-finite values")
    return None


def _check_params(entry: ModuleEntry, hp: Mapping[str, Any], widths: Sequence[int]
                  ) -> list[Failure]:
    if entry.params is None:
        return []
    out = []
    for c in widths:
        built = sum(p.numel() for p in _build(entry, hp, c).parameters())
        formula = int(entry.params(*_args(entry, c), **hp))
        if built != formula:
            out.append(Failure("params", f"channels={c} args={_args(entry, c)}",
                               f"the formula says {formula:,}, the built module has {built:,}"))
    return out


def _check_flops(entry: ModuleEntry, hp: Mapping[str, Any], c: int, size: tuple[int, int]
                 ) -> list[Failure]:
    from nas_attn.cost.counter import count_forward

    module = _build(entry, hp, c).eval()
    xs = _inputs(entry, c, 1, *size)
    counter = count_forward(module, ((xs,) if entry.kind == "fusion" else (xs[0],)),
                            [(entry.name, module)])
    if counter.unhandled:
        ops = ", ".join(sorted(counter.unhandled))
        return [Failure("flops", f"channels={c} size={size[0]}x{size[1]}",
                        f"no FLOP handler for {ops} (nas_attn.cost.register_flop_handler, "
                        "or FREE_OPS.add(name) for an op that costs nothing)")]
    if counter.total <= 0:
        return [Failure("flops", f"channels={c}", "the module counted 0 FLOPs")]
    return []


def _check_gradient(entry: ModuleEntry, hp: Mapping[str, Any], c: int, size: tuple[int, int]
                    ) -> list[Failure]:
    module = _build(entry, hp, c).train()
    xs = [x.requires_grad_(True) for x in _inputs(entry, c, 2, *size)]
    y = _call(entry, module, xs)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    (y * weight).sum().backward()
    where = f"channels={c} size={size[0]}x{size[1]} batch=2"
    out = []
    for i, x in enumerate(xs):
        if x.grad is None or not torch.isfinite(x.grad).all() or not x.grad.abs().sum() > 0:
            label = f"input {i}" if len(xs) > 1 else "the input"
            out.append(Failure("gradient", where, f"no gradient reaches {label}"))
    missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    bad = [n for n, p in module.named_parameters()
           if p.grad is not None and not torch.isfinite(p.grad).all()]
    if missing:
        out.append(Failure("gradient", where, f"no gradient reaches {', '.join(missing)}"))
    if bad:
        out.append(Failure("gradient", where, f"non-finite gradient in {', '.join(bad)}"))
    return out


def _check_determinism(entry: ModuleEntry, hp: Mapping[str, Any], c: int,
                       size: tuple[int, int]) -> list[Failure]:
    module = _build(entry, hp, c).eval()
    xs = _inputs(entry, c, 2, *size)
    with torch.no_grad():
        a, b = _call(entry, module, xs), _call(entry, module, xs)
    if not torch.equal(a, b):
        diff = float((a - b).abs().max())
        return [Failure("determinism", f"channels={c} size={size[0]}x{size[1]} eval",
                        f"two eval-mode passes differ by up to {diff:.3g}")]
    return []


class _StackedFusion(nn.Module):
    """A fusion module behind one tensor input (the blocks' outputs stacked on channels), so it
    exports like any network."""

    def __init__(self, module: nn.Module, n: int) -> None:
        super().__init__()
        self.module = module
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(list(torch.chunk(x, self.n, dim=1)))


def _check_onnx(entry: ModuleEntry, hp: Mapping[str, Any], c: int, size: tuple[int, int]
                ) -> list[Failure]:
    from nas_attn.onnx_export import check_onnx, export_onnx

    module = _build(entry, hp, c).eval()
    model = _StackedFusion(module, NUM_BLOCKS) if entry.kind == "fusion" else module
    shape = ((NUM_BLOCKS * c) if entry.kind == "fusion" else c, *size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "module.onnx"
        try:
            export_onnx(model, path, shape)
            check_onnx(model, path, shape)
        except Exception as e:
            return [Failure("onnx", f"input (N, {', '.join(map(str, shape))})", str(e))]
    return []


POSITION_WIDTHS = (16, 32, 8)  # the tiny network's first-stage widths, tried in this order


def _sites(entry: ModuleEntry, width: int, position: str | None) -> list[tuple[int, ...]]:
    """Constructor arguments at every place of stage 1 of ``tiny`` the module would take."""
    from nas_attn.backbones import get_backbone

    info = get_backbone("tiny").layout({"width": width, "blocks": 2})[1]
    if entry.kind == "fusion":
        return [(info.channels, len(info.blocks))]
    if entry.kind == "conv":
        return [(*b.conv[:2], 3, b.conv[2]) for b in info.blocks if b.conv is not None]
    return [(b.positions[position],) for b in info.blocks if position in b.positions]


def _position_specs(entry: ModuleEntry, hp: Mapping[str, Any], skipped: list[str]
                    ) -> list[tuple[str, dict]]:
    """(where, spec) pairs: the module in stage 1 (a strided block and a plain one) of the
    small ``tiny`` network at every position of its kind, at the first width whose channels
    the module's own ``check()`` accepts (a width it refuses everywhere is skipped)."""
    choice = {"type": entry.name, **hp}
    key = {"gate": "attention", "conv": "conv", "fusion": "fusion"}[entry.kind]
    out = []
    for position in GATE_POSITIONS if entry.kind == "gate" else (None,):
        where = f"stage 1 position {position}" if position else f"stage 1 {key}"
        reasons = [next((r for r in (entry.check(*a, **hp) for a in _sites(entry, w, position))
                         if r), None) if entry.check is not None else None
                   for w in POSITION_WIDTHS]
        if all(reasons):
            skipped.append(f"positions [{where}]: {reasons[0]}")
            continue
        width = POSITION_WIDTHS[reasons.index(None)]
        stage = {key: choice, **({"position": position} if position else {})}
        out.append((where, {"backbone": "tiny", "backbone_args": {"width": width, "blocks": 2},
                            "num_classes": 5, "in_chans": 3, "stages": [None, stage, None]}))
    return out


def _check_positions(entry: ModuleEntry, hp: Mapping[str, Any], skipped: list[str]
                     ) -> list[Failure]:
    from nas_attn.arch import build_model

    out = []
    for where, spec in _position_specs(entry, hp, skipped):
        try:
            torch.manual_seed(0)
            model = build_model(spec).train()
            y = model(torch.randn(2, 3, 16, 16))
            y.square().mean().backward()
        except Exception as e:
            out.append(Failure("positions", where, f"{type(e).__name__}: {e}"))
            continue
        if tuple(y.shape) != (2, 5) or not torch.isfinite(y).all():
            out.append(Failure("positions", where, f"network output {_shape(y)} (expected "
                               "(2, 5), finite)"))
    return out
