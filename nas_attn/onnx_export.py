"""ONNX export of a built network, checked against PyTorch with onnxruntime.

The exporter is torch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``), opset
17, with a dynamic batch axis. Deliberate choice: on torch 2.13 the default (dynamo) exporter
needs the separate ``onnxscript`` package and its graphs differ between releases, while the
TorchScript path is present, exports every zoo module we test and gives stable graphs. Its
deprecation warning is silenced here and the choice is recorded in the model card.

:func:`check_onnx` runs the exported file with onnxruntime (CPU) on fixed random inputs at batch
sizes different from the export batch (which proves the batch axis is really dynamic) and
compares with the PyTorch output: it passes when ``max|onnx - torch| <= atol + rtol * max|torch|``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nas_attn.errors import NasAttnError

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EXPORT_BATCH = 2
CHECK_BATCHES = (1, 3)
ATOL = 1e-4
RTOL = 1e-3
EXPORTER = "torch.onnx.export (TorchScript-based, dynamo=False)"


class ExportError(NasAttnError):
    """The network could not be exported (an op without an ONNX translation, a file problem)."""


class OnnxMismatchError(ExportError):
    """The exported ONNX graph does not reproduce the PyTorch output within tolerance."""

    def __init__(self, max_abs_diff: float, bound: float, batch: int) -> None:
        self.max_abs_diff = max_abs_diff
        self.bound = bound
        self.batch = batch
        super().__init__(
            f"model.onnx: onnxruntime output differs from PyTorch by {max_abs_diff:.3g} at "
            f"batch {batch} (allowed {bound:.3g}); the bundle was not written"
        )


@dataclass(frozen=True)
class OnnxCheck:
    """What :func:`check_onnx` measured (recorded in card.json under ``onnx``)."""

    opset: int
    exporter: str
    input_name: str
    output_name: str
    input_shape: list[Any]
    export_batch: int
    check_batches: list[int]
    max_abs_diff: float
    max_abs_output: float
    atol: float
    rtol: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _inputs(shape: Sequence[int], batch: int, seed: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=g)


def export_onnx(model: Any, path: Path, input_shape: Sequence[int]) -> None:
    """Write ``model`` (put in eval mode) to ``path`` as ONNX with a dynamic batch axis.

    ``input_shape`` is (C, H, W). Raises :class:`ExportError` naming the failing op when torch
    cannot translate the graph.
    """
    import torch

    model.eval()
    x = _inputs(input_shape, EXPORT_BATCH, seed=1)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*will be removed.*")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
    except Exception as e:  # torch raises many types here (SymbolicValueError, RuntimeError...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"model.onnx: torch could not export the network to ONNX "
                          f"(opset {OPSET}): {type(e).__name__}: {first}") from e


def check_onnx(model: Any, path: Path, input_shape: Sequence[int], *, atol: float = ATOL,
               rtol: float = RTOL) -> OnnxCheck:
    """Validate ``path`` with ``onnx.checker`` and compare onnxruntime with PyTorch.

    Raises :class:`OnnxMismatchError` when the outputs differ beyond ``atol + rtol * max|ref|``
    and :class:`ExportError` when the file is not a valid model.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        raise ExportError(f"model.onnx: not a valid ONNX model: {e}") from e
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    model.eval()
    worst, scale = 0.0, 0.0
    for batch in CHECK_BATCHES:
        x = _inputs(input_shape, batch, seed=100 + batch)
        with torch.no_grad():
            ref = model(x).detach().cpu().numpy()
        (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
        if out.shape != ref.shape:
            raise ExportError(f"model.onnx: output shape {list(out.shape)} at batch {batch}, "
                              f"PyTorch gives {list(ref.shape)}")
        diff = float(np.max(np.abs(out.astype(np.float64) - ref))) if ref.size else 0.0
        mag = float(np.max(np.abs(ref))) if ref.size else 0.0
        bound = atol + rtol * mag
        if not np.isfinite(diff) or diff > bound:
            raise OnnxMismatchError(diff, bound, batch)
        worst, scale = max(worst, diff), max(scale, mag)
    return OnnxCheck(
        opset=OPSET,
        exporter=EXPORTER,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_shape=["batch", *input_shape],
        export_batch=EXPORT_BATCH,
        check_batches=list(CHECK_BATCHES),
        max_abs_diff=worst,
        max_abs_output=scale,
        atol=atol,
        rtol=rtol,
    )
