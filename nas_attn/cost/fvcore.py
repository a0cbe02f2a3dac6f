"""fvcore's ``FlopCountAnalysis`` counting with nas-attn's handler table (``--counter fvcore``).

For users who trust fvcore's numbers: the same network is traced with ``torch.jit`` and counted
by fvcore (facebookresearch/fvcore, ``fvcore/nn/flop_count.py``), with a handle set for every op
of :data:`~nas_attn.cost.handlers.FLOP_HANDLERS` (computing exactly what the handler computes)
and every op of :data:`~nas_attn.cost.handlers.FREE_OPS` ignored. fvcore's defaults leave out
the elementwise ops, reductions, softmax and pooling the attention modules are made of (and
count batch norm, norms and adaptive pooling by their own rules), so without the handles an
attention module looks nearly free; with them both counters agree exactly
(tests/test_cost_fvcore.py, every registered module and backbone). docs/cost-model.md lists where
fvcore's defaults differ. A handler added with ``register_flop_handler`` serves both counters.

The two counters see different op names for some calls (fvcore traces ``aten::linear``,
``aten::batch_norm``, ``aten::group_norm``; the dispatch counter sees ``aten::addmm``,
``aten::_native_batch_norm_legit_no_training``, ``aten::native_group_norm``): the table has a
handler under each name, with the argument layout of that name.

fvcore, and the tracing it needs, load only when this module's functions are called.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas_attn.cost.handlers import FLOP_HANDLERS, FREE_OPS, Handler

_INSTALL_HINT = "fvcore is needed for --counter fvcore: pip install fvcore"


@dataclass(frozen=True)
class FvcoreResult:
    """fvcore's count of one network at batch 1 (one multiply-add = 1 FLOP, as nas-attn).

    ``by_op``: fvcore's per-operator counts (its short names: ``conv``, ``linear``, ``mul``);
    ``by_module``: FLOPs per attention module (qualified name); ``unsupported``: ops fvcore met
    that neither a handle nor its ignore list covers (counted 0); ``table``: fvcore's
    per-module table (``flop_count_table``)."""

    flops: int
    backbone_flops: int
    attention_flops: int
    input_size: tuple[int, ...]
    by_op: dict[str, int] = field(default_factory=dict)
    by_module: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)
    table: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


_SHAPE_SOURCES = frozenset({"prim::NumToTensor", "aten::size", "prim::Constant"})


def _is_shape_arithmetic(v: Any) -> bool:
    """True for a 0-dim tensor the tracer made from Python numbers (``h * w`` of sizes): the
    model computes it in Python, so the dispatch counter never sees it."""
    t = v.type()
    if t.kind() != "TensorType":
        return True
    if t.sizes() != []:
        return False
    node = v.node()
    if node.kind() in _SHAPE_SOURCES:
        return True
    if not node.kind().startswith("aten::"):  # a parameter, a graph input: real data
        return False
    return all(_is_shape_arithmetic(i) for i in node.inputs())


def _value(v: Any) -> Any:
    """A traced graph value as the handler table's handlers take it: tensors as meta tensors
    of their traced shape, lists element by element, constants as their values."""
    t = v.type()
    if t.kind() == "TensorType":
        sizes = t.sizes()
        return None if sizes is None else torch.empty(sizes, device="meta")
    node = v.node()
    if node.kind() == "prim::ListConstruct":
        return [_value(i) for i in node.inputs()]
    try:
        return v.toIValue()
    except RuntimeError:
        return None


def jit_handle(handler: Handler):
    """An fvcore handle ``(inputs, outputs) -> flops`` running one of nas-attn's handlers."""

    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        if all(_is_shape_arithmetic(v) for v in inputs):
            return 0
        args = tuple(_value(v) for v in inputs)
        outs = [_value(v) for v in outputs]
        return int(handler(args, {}, outs[0] if len(outs) == 1 else tuple(outs)))

    return handle


def flop_count_analysis(model: nn.Module, inputs: tuple[Any, ...]) -> Any:
    """fvcore's ``FlopCountAnalysis`` of ``model(*inputs)`` with nas-attn's handles added (and
    nas-attn's free ops ignored); warnings about unsupported ops or uncalled modules off."""
    try:
        from fvcore.nn import FlopCountAnalysis
    except ImportError as e:  # pragma: no cover - fvcore is a dependency
        raise ImportError(_INSTALL_HINT) from e
    analysis = FlopCountAnalysis(model, inputs)
    analysis.set_op_handle(**{name: jit_handle(h) for name, h in FLOP_HANDLERS.items()})
    analysis.set_op_handle(**{name: None for name in FREE_OPS if name not in FLOP_HANDLERS})
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def _cpu_model(spec: Any) -> tuple[nn.Module, tuple[int, ...]]:
    """The spec's network on the CPU without initialising it (tracing needs real tensors, not
    their values): built on meta, moved with ``to_empty`` and zeroed."""
    from nas_attn.arch import build_model, load_spec
    from nas_attn.backbones import get_backbone
    from nas_attn.cost.counter import MetaInitMode

    canon = load_spec(spec)
    natural = get_backbone(canon.backbone).natural_input_size(canon.backbone_args)
    with torch.device("meta"), MetaInitMode():
        model = build_model(canon)
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            t.zero_()
    return model, (canon.in_chans, *natural[1:])


def profile_fvcore(
    spec_or_model: nn.Module | Mapping[str, Any] | str | Path | Any,
    input_size: Sequence[int] | None = None,
    *,
    max_depth: int = 3,
) -> FvcoreResult:
    """Count ``spec_or_model`` (a spec, spec file or module) with fvcore at batch 1, on a zero
    input of ``input_size`` (C, H, W; by default the backbone's natural input, or
    (3, 224, 224) for a module). ``max_depth``: depth of the per-module table."""
    from fvcore.nn import flop_count_table

    from nas_attn.arch import ArchSpec
    from nas_attn.cost.api import _check_size, attention_modules
    from nas_attn.errors import ConfigError

    if isinstance(spec_or_model, nn.Module):
        model, natural = spec_or_model, (3, 224, 224)
    elif isinstance(spec_or_model, ArchSpec | Mapping | str | Path):
        model, natural = _cpu_model(spec_or_model)
    else:
        raise ConfigError("spec_or_model", type(spec_or_model).__name__,
                          "expected an ArchSpec, a spec mapping, a spec file or an nn.Module")
    size = _check_size(input_size if input_size is not None else natural)
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        param = next(model.parameters(), None)
        x = torch.zeros(1, *size, device=param.device if param is not None else "cpu",
                        dtype=param.dtype if param is not None else torch.float32)
        analysis = flop_count_analysis(model, (x,))
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            total = int(analysis.total())
            table = flop_count_table(analysis, max_depth=max_depth)
        by_module_all = analysis.by_module()
    finally:
        for m, flag in flags.items():
            m.train(flag)
    # fvcore names the root module "" (a bare zoo module is its own attention module)
    by_module = {q: int(by_module_all.get("" if m is model else q, 0))
                 for q, m in attention_modules(model)}
    attention = sum(by_module.values())
    return FvcoreResult(
        flops=total,
        backbone_flops=total - attention,
        attention_flops=attention,
        input_size=size,
        by_op={k: int(v) for k, v in analysis.by_operator().most_common()},
        by_module=by_module,
        unsupported={k: int(v) for k, v in analysis.unsupported_ops().items()},
        table=table,
    )
