"""Export bundles: an architecture with its trained weights, as a folder a user takes away.

``export_bundle(spec, model_or_state_dict, out_dir, metadata=...)`` writes the bundle (spec,
safetensors weights, ONNX checked with onnxruntime, model card); ``load(bundle_path)`` rebuilds
the network from it. Import-light: torch, safetensors and the ONNX stack load on first use.
See docs/export.md.
"""

from __future__ import annotations

from nas_attn._imports import lazy_getattr

_LAZY = {
    "export_bundle": "nas_attn.export.bundle",
    "resolve_output": "nas_attn.export.bundle",
    "BUNDLE_FILES": "nas_attn.export.layout",
    "load": "nas_attn.export.loader",
    "read_weights": "nas_attn.export.loader",
    "ExportError": "nas_attn.onnx_export",
    "OnnxMismatchError": "nas_attn.onnx_export",
    "METADATA_KEYS": "nas_attn.export.card",
    "PICKS": "nas_attn.export.picks",
    "parse_pick": "nas_attn.export.picks",
    "select": "nas_attn.export.picks",
}


__getattr__ = lazy_getattr("nas_attn.export", _LAZY)


__all__ = sorted(_LAZY)
