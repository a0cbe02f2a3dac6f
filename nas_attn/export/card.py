"""The model card of an export bundle: ``card.json`` (machine-readable) and ``MODEL_CARD.md``.

:func:`validate_metadata` checks what the caller says about the model (objectives, training,
seed, latency, where it sits on the Pareto front...); :func:`build_card` adds what the bundle
knows itself (canonical spec, hash, params/FLOPs from :func:`nas_attn.cost.profile`, the ONNX
check, software versions, file checksums); :func:`render_markdown` writes it for people.
Everything here is pure apart from the version look-up.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.objectives import is_finite_number

FORMAT = "nas-attn-bundle"
FORMAT_VERSION = 1

METADATA_KEYS = {
    "objectives": "objective values of the trained model, e.g. {val_accuracy: 0.91, flops: 4.1e7}",
    "directions": "direction of each objective, e.g. {val_accuracy: maximize, flops: minimize}",
    "training": "training settings (epochs, optimizer, lr, batch size, augmentation...)",
    "dataset": "dataset name or its configuration",
    "seed": "the random seed the weights were trained with (an integer)",
    "latency": "measured latency, e.g. {ms: 1.7, device: cpu, batch_size: 1}",
    "front": "where the model sits on the Pareto front, e.g. {pick: knee, on_front: true, "
             "front_size: 7, rank: 3}",
    "trial": "the search trial it comes from, e.g. {study: cifar, number: 42, run_dir: ...}",
    "notes": "free text shown in MODEL_CARD.md",
    "extra": "anything else (a mapping), stored as given",
}
_MAPPING_KEYS = ("objectives", "directions", "training", "latency", "front", "trial", "extra")
_DIRECTIONS = ("maximize", "minimize")


def validate_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of ``metadata``; ConfigError naming the key for anything unusable."""
    if not isinstance(metadata, Mapping):
        raise ConfigError("metadata", metadata, "expected a mapping with keys", sorted(METADATA_KEYS))
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if key not in METADATA_KEYS:
            raise ConfigError(f"metadata.{key}", value, "unknown metadata key", sorted(METADATA_KEYS))
        if value is None:
            continue
        if key in _MAPPING_KEYS and not isinstance(value, Mapping):
            raise ConfigError(f"metadata.{key}", value, "expected a mapping")
        if key == "seed" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError("metadata.seed", value, "expected an integer")
        if key == "notes" and not isinstance(value, str):
            raise ConfigError("metadata.notes", value, "expected a string")
        if key == "objectives":
            for name, v in value.items():
                if not is_finite_number(v):
                    raise ConfigError(f"metadata.objectives.{name}", v, "expected a finite number")
        if key == "directions":
            for name, d in value.items():
                if d not in _DIRECTIONS:
                    raise ConfigError(f"metadata.directions.{name}", d, "unknown direction",
                                      _DIRECTIONS)
        try:
            out[key] = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"metadata.{key}", value,
                              f"not JSON-serialisable (plain numbers, strings, lists, mappings): {e}"
                              ) from None
    return out


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from nas_attn import __version__

    out = {"nas_attn": __version__, "python": platform.python_version()}
    for pkg in ("torch", "onnx", "onnxruntime", "safetensors", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def cost_summary(spec: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Params and FLOPs from :func:`nas_attn.cost.profile` (per image, 1 multiply-add = 1 FLOP),
    or the reason they could not be computed (the card is still written)."""
    try:
        from nas_attn.cost import profile
    except ImportError as e:  # pragma: no cover - the cost model ships with nas_attn
        return {"error": f"nas_attn.cost unavailable: {e}"}
    try:
        r = profile(spec, input_shape)
    except Exception as e:  # a cost-model gap must not block an export; it is recorded instead
        return {"error": f"{type(e).__name__}: {e}"}
    return {
        "params": r.params,
        "attention_params": r.attention_params,
        "flops": r.flops,
        "backbone_flops": r.backbone_flops,
        "attention_flops": r.attention_flops,
        "conv_linear_macs": r.conv_linear_macs,
        "input_size": list(r.input_size),
        "convention": "per image; 1 multiply-add = 1 FLOP; every op counted (nas_attn.cost)",
        "unhandled_ops": list(r.unhandled),
    }


def build_card(*, spec: Any, spec_hash: str, input_shape: tuple[int, ...], num_params: int,
               cost: Mapping[str, Any], onnx_check: Mapping[str, Any],
               metadata: Mapping[str, Any], files: Mapping[str, Mapping[str, Any]],
               created: str, backbone_weights: Mapping[str, str] | None = None
               ) -> dict[str, Any]:
    """The card.json content (metadata must already be validated). ``backbone_weights``:
    ``{path, sha256}`` of the pretrained weights the training started from."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": created,
        "spec_hash": spec_hash,
        "spec": spec.to_dict(),
        "input": {"name": onnx_check.get("input_name", "input"), "shape": ["batch", *input_shape],
                  "dtype": "float32", "layout": "NCHW",
                  "note": "normalise inputs exactly as during training (see training)"},
        "output": {"name": onnx_check.get("output_name", "logits"),
                   "shape": ["batch", spec.num_classes], "kind": "logits (no softmax)"},
        "num_params": num_params,
        "cost": dict(cost),
        "onnx": dict(onnx_check),
        **({"backbone_weights": dict(backbone_weights)} if backbone_weights else {}),
        **{k: metadata[k] for k in METADATA_KEYS if k in metadata},
        "software": software_versions(),
        "files": {k: dict(v) for k, v in files.items()},
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10_000:
        return f"{v:,}"
    if isinstance(v, Mapping | list):
        return f"`{json.dumps(v, sort_keys=True)}`"
    return str(v)


def _table(rows: Mapping[str, Any]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in rows.items()]
    return lines


def render_markdown(card: Mapping[str, Any], spec_yaml: str) -> str:
    """MODEL_CARD.md: the card for people, every number taken from ``card``."""
    spec = card["spec"]
    out = [
        f"# Model card: {spec['backbone']} with attention ({card['spec_hash']})",
        "",
        f"Exported by nas-attn {card['software']['nas_attn']} on {card['created']}. "
        f"Input {card['input']['shape']} float32 NCHW; output {card['output']['shape']} logits.",
        "",
        "## Architecture",
        "",
        f"Spec hash `{card['spec_hash']}` (canonical spec, `spec.yaml` / `spec.json`).",
        "",
        "```yaml",
        spec_yaml.rstrip(),
        "```",
        "",
    ]
    if "backbone_weights" in card:
        out += ["## Pretrained backbone", "",
                "Training started from these backbone weights (inserted modules and a resized "
                "classifier from their own initialisation):", "", *_table(card["backbone_weights"]),
                ""]
    if "objectives" in card:
        dirs = card.get("directions", {})
        out += ["## Objectives", ""]
        out += _table({(f"{k} ({dirs[k]})" if k in dirs else k): v
                       for k, v in card["objectives"].items()})
        out.append("")
    if "front" in card:
        out += ["## Position on the Pareto front", "", *_table(card["front"]), ""]
    out += ["## Cost", ""]
    cost = card["cost"]
    if "error" in cost:
        out += [f"Not computed: {cost['error']}", f"Parameters: {card['num_params']:,}", ""]
    else:
        out += _table({k: cost[k] for k in ("params", "attention_params", "flops",
                                             "backbone_flops", "attention_flops",
                                             "conv_linear_macs", "input_size")})
        out += ["", f"FLOPs: {cost['convention']}.", ""]
    if "latency" in card:
        out += ["## Latency", "", *_table(card["latency"]), ""]
    for key, title in (("training", "Training"), ("trial", "Search trial")):
        if key in card:
            out += [f"## {title}", "", *_table(card[key]), ""]
    if "dataset" in card or "seed" in card:
        out += ["## Data and seed", ""]
        out += _table({k: card[k] for k in ("dataset", "seed") if k in card})
        out.append("")
    onnx = card["onnx"]
    out += [
        "## ONNX check",
        "",
        f"`model.onnx` (opset {onnx['opset']}, {onnx['exporter']}, dynamic batch axis) was run "
        f"with onnxruntime at batch sizes {onnx['check_batches']} and compared with PyTorch: "
        f"max abs difference {onnx['max_abs_diff']:.3g} (allowed {onnx['atol']:g} + "
        f"{onnx['rtol']:g} x max|output| = {onnx['atol'] + onnx['rtol'] * onnx['max_abs_output']:.3g}).",
        "",
    ]
    if "notes" in card:
        out += ["## Notes", "", card["notes"], ""]
    if "extra" in card:
        out += ["## Extra", "", *_table(card["extra"]), ""]
    out += ["## Software", "", *_table(card["software"]), ""]
    out += ["## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    out += [f"| {name} | {f['bytes']:,} | `{f['sha256']}` |" for name, f in card["files"].items()]
    out += ["", "How to load: see `LOADING.md`.", ""]
    return "\n".join(out)


LOADING_NOTE = """\
# Loading this bundle

With nas-attn installed (same or newer version):

```python
import nas_attn
model = nas_attn.load("{name}")          # nn.Module in eval mode, on CPU
model = nas_attn.load("{name}", device="cuda")
```

Without nas-attn, the ONNX graph runs anywhere onnxruntime does:

```python
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("{name}/model.onnx")
logits = session.run(["logits"], {{"input": x.astype(np.float32)}})[0]  # x: (N, {c}, {h}, {w})
```

Inputs must be normalised as during training (see `MODEL_CARD.md`). The weights are in
`weights.safetensors` (no pickle, nothing runs on load); `spec.yaml` rebuilds the network with
`nas_attn.build_model`. `card.json` lists every file with its SHA-256; `nas_attn.load` checks them.
"""


FACTORY_NOTE = """
This network's backbone is user code, `{factory}` (a `factory` backbone): `nas_attn.load`
imports it again, so that module must be importable and loading needs consent, as building it
did (`NAS_ATTN_ALLOW_PLUGINS=1`, or `--allow-plugins` on the command line). The ONNX graph
needs neither.
"""


def loading_note(name: str, input_shape: tuple[int, ...], factory: str | None = None) -> str:
    """LOADING.md; ``factory``: the user's function of a factory backbone, if it is one."""
    c, h, w = input_shape
    note = LOADING_NOTE.format(name=name, c=c, h=h, w=w)
    return note + FACTORY_NOTE.format(factory=factory) if factory else note
