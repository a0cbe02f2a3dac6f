"""Export bundles: an architecture with its trained weights, as a folder a user takes away.

``export_bundle(spec, model_or_state_dict, out_dir, metadata=...)`` writes the bundle (spec,
safetensors weights, ONNX checked with onnxruntime, model card); ``load(bundle_path)`` rebuilds
the network from it. Import-light: torch, safetensors and the ONNX stack load on first use.
See docs/export.md.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "export_bundle": "nas_attn.export.bundle",
    "resolve_output": "nas_attn.export.bundle",
    "BUNDLE_FILES": "nas_attn.export.bundle",
    "load": "nas_attn.export.loader",
    "read_weights": "nas_attn.export.loader",
    "ExportError": "nas_attn.export.onnx",
    "OnnxMismatchError": "nas_attn.export.onnx",
    "METADATA_KEYS": "nas_attn.export.card",
    "PICKS": "nas_attn.export.picks",
    "parse_pick": "nas_attn.export.picks",
    "select": "nas_attn.export.picks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nas_attn.export' has no attribute {name!r}")


__all__ = sorted(_LAZY)
