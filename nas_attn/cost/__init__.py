"""The cost model: params, FLOPs with every attention op counted, measured latency.

``profile(spec_or_model)`` is the entry point; the counting convention and the per-op handler
table are in :mod:`nas_attn.cost.handlers` (extend it with :func:`register_flop_handler`).
:mod:`nas_attn.cost.fvcore` counts the same with fvcore's ``FlopCountAnalysis`` (imported only
there, so ``import nas_attn.cost`` does not load fvcore).
"""

from nas_attn.cost.api import (
    ProfileResult,
    UnhandledOpsError,
    attention_modules,
    cache_size,
    clear_cache,
    measure_latency,
    profile,
    profile_module,
)
from nas_attn.cost.counter import FlopCounter, count_forward
from nas_attn.cost.handlers import (
    CONV_LINEAR_OPS,
    FLOP_HANDLERS,
    FREE_OPS,
    per_input_element,
    per_output_element,
    register_flop_handler,
)

__all__ = [
    "CONV_LINEAR_OPS",
    "FLOP_HANDLERS",
    "FREE_OPS",
    "FlopCounter",
    "ProfileResult",
    "UnhandledOpsError",
    "attention_modules",
    "cache_size",
    "clear_cache",
    "count_forward",
    "measure_latency",
    "per_input_element",
    "per_output_element",
    "profile",
    "profile_module",
    "register_flop_handler",
]
