"""Latency tables of a search space: build one (:func:`build_table`), check how well it predicts
whole networks (:func:`validate_table`). The table format and the prediction are in
:mod:`nas_attn.cost.latency_table`; ``profile(spec, latency="lut:FILE")`` reads a table."""

from nas_attn.latency.build import add_missing, build_table, stage_specs
from nas_attn.latency.validate import Validation, repeat_spread, validate_table

__all__ = ["Validation", "add_missing", "build_table", "repeat_spread", "stage_specs",
           "validate_table"]
