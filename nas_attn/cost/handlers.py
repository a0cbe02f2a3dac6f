"""The FLOP handler table: one entry per aten op, extensible by users (after fvcore's handles).

Counting convention (also in docs/cost-model.md):

- one multiply-add = 1 FLOP (the fvcore convention; torch's FlopCounterMode counts 2). A bias
  add folds into its multiply-add chain, so convolutions and linear layers cost exactly their
  multiply-adds, with or without bias;
- convolution: output elements x (C_in / groups) x kernel area (transposed: input elements x
  (C_out / groups) x kernel area);
- mm / addmm / bmm / baddbmm / matmul: their multiply-adds;
- elementwise ops (sigmoid, mul, add, relu, hardswish, exp, log, ...): 1 per output element,
  whatever the op computes inside (hardswish and GELU count 1 like ReLU);
- reductions (mean, sum, amax, max, ...): 1 per input element; var/std: 2 per input element;
- softmax / log_softmax: ``SOFTMAX_FLOPS_PER_ELEMENT`` (5: max, subtract, exp, sum, divide);
- batch norm with stored statistics (eval): 2 per element (the folded scale and shift);
  norms that compute statistics (group norm, layer norm, batch norm in training):
  ``NORM_STATS_FLOPS_PER_ELEMENT`` (5: mean 1, variance 2, normalise 2) plus 2 with affine;
- pooling: 1 per element of each output's input window (max and average alike), i.e.
  output elements x window area; adaptive pooling sums its exact, uneven windows;
- data movement (views, reshapes, permutes, copies, cat, stack, split, pad, tensor creation) is
  free: it moves data but computes nothing. Those ops are listed in ``FREE_OPS``.

An op that is neither handled nor free is reported (``ProfileResult.unhandled``; ``strict=True``
raises). Add a handler with :func:`register_flop_handler`, or declare an op free with
``FREE_OPS.add("aten::name")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

Handler = Callable[[tuple[Any, ...], dict[str, Any], Any], int]
"""``handler(args, kwargs, out) -> flops`` for one call of an op (args as the aten op got them)."""

SOFTMAX_FLOPS_PER_ELEMENT = 5
NORM_STATS_FLOPS_PER_ELEMENT = 5
NORM_AFFINE_FLOPS_PER_ELEMENT = 2
BN_EVAL_FLOPS_PER_ELEMENT = 2

FLOP_HANDLERS: dict[str, Handler] = {}
"""aten op name (``"aten::mul"``, all overloads together) -> handler."""

CONV_LINEAR_OPS: set[str] = {"aten::convolution", "aten::mm", "aten::addmm"}
"""Ops whose multiply-adds make up ``conv_linear_macs`` (nn.Linear lowers to mm/addmm)."""

FREE_OPS: set[str] = {
    f"aten::{n}"
    for n in (
        # views and reshapes
        "view", "_unsafe_view", "reshape", "_reshape_alias", "as_strided", "expand", "expand_as",
        "permute", "transpose", "t", "unsqueeze", "squeeze", "flatten", "unflatten", "slice",
        "select", "narrow", "split", "split_with_sizes", "chunk", "unbind", "alias", "detach",
        "view_as", "movedim", "unfold", "diagonal", "contiguous", "lift_fresh",
        # copies and moves
        "clone", "copy_", "_to_copy", "to", "cat", "stack", "constant_pad_nd", "pad",
        "repeat", "roll", "flip", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
        "index_select", "gather", "masked_fill", "masked_fill_",
        # tensor creation
        "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros",
        "zeros_like", "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like",
        "new_full", "fill_", "zero_", "scalar_tensor", "arange", "uniform_", "normal_",
        # dropout in eval is the identity; these only appear in training
        "dropout", "native_dropout",
    )
}


def op_name(func: Any) -> str:
    """``"aten::mul"`` for ``torch.ops.aten.mul.Tensor``, ``torch.ops.aten.mul`` or the string."""
    if isinstance(func, str):
        return func if "::" in func else f"aten::{func}"
    packet = getattr(func, "overloadpacket", func)
    return packet._qualified_op_name


def register_flop_handler(ops: str | Any | Iterable[str | Any], handler: Handler) -> None:
    """Count ``ops`` (names like ``"aten::erf"`` or ``torch.ops.aten.erf``) with ``handler``.

    Replaces an existing handler and removes the op from ``FREE_OPS``.
    """
    if not isinstance(ops, list | tuple | set | frozenset):
        ops = [ops]  # one name or op (an OpOverloadPacket iterates over its overload names)
    for op in ops:
        name = op_name(op)
        FLOP_HANDLERS[name] = handler
        FREE_OPS.discard(name)


# ---------------------------------------------------------------------------------------------
# helpers


def _numel(t: Any) -> int:
    if isinstance(t, torch.Tensor):
        return t.numel()
    if isinstance(t, list | tuple):
        return sum(_numel(x) for x in t)
    return 0


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, list | tuple) else out


def per_output_element(k: int = 1) -> Handler:
    """``k`` FLOPs per element of the (first) output."""

    def handler(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        return k * _first(out).numel()

    return handler


def per_input_element(k: int = 1) -> Handler:
    """``k`` FLOPs per element of the first input (reductions)."""

    def handler(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        return k * args[0].numel()

    return handler


def _register(names: Iterable[str], handler: Handler) -> None:
    for n in names:
        FLOP_HANDLERS[f"aten::{n}"] = handler


# ---------------------------------------------------------------------------------------------
# conv and matmul


def _conv(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    x, w = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else bool(kwargs.get("transposed", False))
    kernel = math.prod(w.shape[2:])
    if transposed:  # weight (C_in, C_out / groups, *k): every input element meets C_out/g * k
        return x.numel() * w.shape[1] * kernel
    return _first(out).numel() * w.shape[1] * kernel


def _mm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * b.shape[1]


def _linear(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    # aten::linear(input, weight (out, in), bias): traced by fvcore; dispatch lowers it to mm
    return _first(out).numel() * args[1].shape[1]


def _addmm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    return _mm(args[1:], kwargs, out)


def _bmm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


def _baddbmm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    return _bmm(args[1:], kwargs, out)


def _matmul(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    a = args[0]
    # out = (..., n, p) and every output element is a dot product of length k
    return _first(out).numel() * a.shape[-1]


def _sdpa(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    q, k, v = args[0], args[1], args[2]
    batch = math.prod(q.shape[:-2])
    lq, e, lk, ev = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    scores = batch * lq * lk
    return scores * e + scores * SOFTMAX_FLOPS_PER_ELEMENT + scores * ev


_register(["convolution", "_convolution", "conv2d", "conv1d", "conv3d"], _conv)
_register(["mm"], _mm)
_register(["linear"], _linear)
_register(["addmm"], _addmm)
_register(["bmm"], _bmm)
_register(["baddbmm"], _baddbmm)
_register(["matmul"], _matmul)
_register(
    ["scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
     "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention"],
    _sdpa,
)


# ---------------------------------------------------------------------------------------------
# elementwise, reductions, softmax

_ELEMENTWISE = (
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "abs",
    "sigmoid", "sigmoid_", "tanh", "tanh_", "relu", "relu_", "relu6", "leaky_relu",
    "leaky_relu_", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid",
    "hardsigmoid_", "silu", "silu_", "gelu", "gelu_", "elu", "elu_", "mish", "softplus",
    "exp", "exp_", "log", "log_", "log2", "sqrt", "rsqrt", "reciprocal", "pow", "square",
    "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "where", "maximum", "minimum",
    "sign", "floor", "ceil", "round", "addcmul", "addcdiv", "lerp", "xlogy", "special_xlogy",
    "eq", "ne", "gt", "ge", "lt", "le", "logical_not", "erf", "threshold", "threshold_",
    "prelu", "_prelu_kernel", "log_sigmoid_forward", "sin", "cos",
)
_register(_ELEMENTWISE, per_output_element(1))

_REDUCTIONS = (
    "mean", "sum", "amax", "amin", "max", "min", "prod", "logsumexp", "norm",
    "linalg_vector_norm", "argmax", "argmin", "cumsum", "any", "all",
)
_register(_REDUCTIONS, per_input_element(1))
_register(("var", "std", "var_mean", "std_mean"), per_input_element(2))
_register(("_softmax", "softmax", "_log_softmax", "log_softmax"),
          per_output_element(SOFTMAX_FLOPS_PER_ELEMENT))


# ---------------------------------------------------------------------------------------------
# norms


def _batch_norm_training_flag(args: Sequence[Any], kwargs: dict[str, Any], index: int) -> bool:
    if "training" in kwargs:
        return bool(kwargs["training"])
    return bool(args[index]) if len(args) > index else False


def _bn(index_of_training: int) -> Handler:
    """Batch norm taking its ``training`` flag at position ``index_of_training``."""

    def handler(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        x, weight = args[0], args[1] if len(args) > 1 else None
        if not _batch_norm_training_flag(args, kwargs, index_of_training):
            return BN_EVAL_FLOPS_PER_ELEMENT * x.numel()
        affine = NORM_AFFINE_FLOPS_PER_ELEMENT if weight is not None else 0
        return (NORM_STATS_FLOPS_PER_ELEMENT + affine) * x.numel()

    return handler


def _stats_norm(weight_index: int) -> Handler:
    def handler(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        weight = args[weight_index] if len(args) > weight_index else kwargs.get("weight")
        affine = NORM_AFFINE_FLOPS_PER_ELEMENT if weight is not None else 0
        return (NORM_STATS_FLOPS_PER_ELEMENT + affine) * args[0].numel()

    return handler


_register(["native_batch_norm", "batch_norm", "cudnn_batch_norm", "miopen_batch_norm"], _bn(5))
_register(["_native_batch_norm_legit_no_training"], per_output_element(BN_EVAL_FLOPS_PER_ELEMENT))
_register(["native_group_norm"], _stats_norm(1))
_register(["group_norm"], _stats_norm(2))  # group_norm(input, num_groups, weight, bias, ...)
_register(["native_layer_norm", "layer_norm"], _stats_norm(2))
_register(["instance_norm"], _stats_norm(1))


def _legit_bn(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    # _native_batch_norm_legit(input, weight, bias, running_mean, running_var, training, ...)
    # or .no_stats(input, weight, bias, training, ...): find the flag by type
    flags = [a for a in args[3:] if isinstance(a, bool)]
    training = flags[0] if flags else True
    x, weight = args[0], args[1]
    if not training:
        return BN_EVAL_FLOPS_PER_ELEMENT * x.numel()
    affine = NORM_AFFINE_FLOPS_PER_ELEMENT if weight is not None else 0
    return (NORM_STATS_FLOPS_PER_ELEMENT + affine) * x.numel()


_register(["_native_batch_norm_legit"], _legit_bn)


# ---------------------------------------------------------------------------------------------
# pooling


def _pair(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(v)
    return v * n if len(v) == 1 else v


def _window_pool(ndim: int) -> Handler:
    def handler(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        kernel = _pair(args[1] if len(args) > 1 else kwargs["kernel_size"], ndim)
        return _first(out).numel() * math.prod(kernel)

    return handler


def _adaptive_windows(n_in: int, n_out: int) -> int:
    """Total length of the windows adaptive pooling reads along one axis (torch's rule)."""
    return sum(
        -(-((i + 1) * n_in) // n_out) - (i * n_in) // n_out for i in range(n_out)
    )


def _adaptive_pool(ndim: int) -> Handler:
    def handler(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        x = args[0]
        o = _first(out)
        lead = math.prod(x.shape[:-ndim])
        windows = math.prod(
            _adaptive_windows(x.shape[-ndim + i], o.shape[-ndim + i]) for i in range(ndim)
        )
        return lead * windows

    return handler


_register(["max_pool2d_with_indices", "max_pool2d", "avg_pool2d"], _window_pool(2))
_register(["max_pool1d", "max_pool1d_with_indices", "avg_pool1d"], _window_pool(1))
_register(["max_pool3d_with_indices", "avg_pool3d"], _window_pool(3))
_register(["_adaptive_avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"], _adaptive_pool(2))
_register(["adaptive_avg_pool1d", "adaptive_max_pool1d"], _adaptive_pool(1))
_register(["_adaptive_avg_pool3d", "adaptive_max_pool3d"], _adaptive_pool(3))
