"""nas-attn: find out, with evidence, which attention module belongs where in a CNN.

``import nas_attn`` stays light: torch and the zoo load on first use of ``build_model`` or
``profile``; Ray, plotly and the ONNX stack load only where they are used.
"""

from __future__ import annotations

from nas_attn._imports import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "ArchSpec": "nas_attn.arch",
    "build_model": "nas_attn.arch",
    "canonicalize": "nas_attn.arch",
    "load": "nas_attn.export",
    "load_ablation": "nas_attn.ablation.load",
    "load_run": "nas_attn.search.results",
    "load_spec": "nas_attn.arch",
    "spec_hash": "nas_attn.arch",
    "profile": "nas_attn.cost",
}


__getattr__ = lazy_getattr("nas_attn", _LAZY)


__all__ = sorted(_LAZY)
