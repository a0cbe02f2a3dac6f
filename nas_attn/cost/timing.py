"""Timing a module the way latency tables are measured: fixed threads, warm-up, many runs.

Two runtimes: ``torch`` (eager, inference mode; CUDA events around each run on a GPU) and
``onnxruntime`` (the module exported to ONNX, one session with fixed intra-op threads, one
inter-op thread, sequential execution, all graph optimisations). Each timing reports the median
and the quartiles of ``repeats`` runs after ``warmup`` untimed ones. :func:`fingerprint` says
which machine and runtime a timing belongs to.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError

RUNTIMES = ("torch", "onnxruntime")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Timing:
    """Milliseconds per run: median and quartiles of ``repeats`` runs."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    repeats: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_settings(runtime: str, device: str, threads: int) -> None:
    """ConfigError naming the field for a runtime, device or thread count that cannot time."""
    if runtime not in RUNTIMES:
        raise ConfigError("runtime", runtime, "unknown runtime", RUNTIMES)
    if device not in DEVICES:
        raise ConfigError("device", device, "unknown device", DEVICES)
    from nas_attn.config import check_int

    check_int(threads, "threads", low=1)
    if runtime == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ConfigError("runtime", runtime, "onnxruntime is not installed "
                              "(pip install onnxruntime)", ["torch"]) from None
        if device == "cuda":
            raise ConfigError("device", device, "onnxruntime is timed on the CPU here; time a "
                              "GPU with --runtime torch", ["cpu"])
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device", device, "no CUDA device is available", ["cpu"])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(runtime: str, device: str, threads: int) -> dict[str, Any]:
    """What a latency figure depends on besides the network: the machine and the runtime."""
    import torch

    out: dict[str, Any] = {"cpu": _cpu_model(), "machine": platform.machine(),
                           "threads": threads, "runtime": runtime, "device": device,
                           "torch": torch.__version__}
    if runtime == "onnxruntime":
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
        out["cuda"] = torch.version.cuda
    return out


def fingerprint_difference(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fields in which two fingerprints differ (empty when they agree)."""
    return sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _summary(times_s: Sequence[float]) -> Timing:
    ms = sorted(t * 1000.0 for t in times_s)
    q = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else [ms[0]] * 3
    return Timing(statistics.median(ms), q[0], q[2], len(ms))


def time_torch(module: Any, input_shape: Sequence[int], *, device: str = "cpu",
               threads: int = 1, warmup: int = 10, repeats: int = 50) -> Timing:
    """Eager PyTorch: ``module`` (eval, inference mode) on a random input of ``input_shape``."""
    import torch

    dev = torch.device(device)
    module = module.to(dev).eval()
    x = torch.randn(*input_shape, device=dev)
    times = []
    with torch_threads(threads), torch.inference_mode():
        for _ in range(warmup):
            module(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True)
                start.record()
                module(x)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000.0)
        else:
            for _ in range(repeats):
                t0 = time.perf_counter()
                module(x)
                times.append(time.perf_counter() - t0)
    return _summary(times)


def session_from_onnx(model: bytes | str | Path, threads: int) -> Any:
    """An onnxruntime session (CPU, ``threads`` intra-op threads, one inter-op thread,
    sequential, all graph optimisations) of an ONNX model (its bytes or its file)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def onnx_session(module: Any, input_shape: Sequence[int], threads: int) -> Any:
    """:func:`session_from_onnx` of ``module`` exported with the export bundle's exporter
    settings (:func:`nas_attn.onnx_export.export_onnx`)."""
    from nas_attn.onnx_export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cell.onnx"
        export_onnx(module.cpu().eval(), path, tuple(input_shape[1:]))
        return session_from_onnx(path.read_bytes(), threads)


def time_session(session: Any, input_shape: Sequence[int], *, warmup: int = 10,
                 repeats: int = 50) -> Timing:
    """An onnxruntime session run on a fixed random input of ``input_shape``."""
    import numpy as np

    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal(tuple(input_shape), dtype=np.float32)
    feed = {name: x}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return _summary(times)


def time_onnxruntime(module: Any, input_shape: Sequence[int], *, threads: int = 1,
                     warmup: int = 10, repeats: int = 50) -> Timing:
    """onnxruntime on the CPU: ``module`` exported to ONNX, timed with one session."""
    return time_session(onnx_session(module, input_shape, threads), input_shape,
                        warmup=warmup, repeats=repeats)


def time_module(module: Any, input_shape: Sequence[int], *, runtime: str, device: str,
                threads: int, warmup: int = 10, repeats: int = 50) -> Timing:
    """Time ``module`` with ``runtime`` on ``device`` (settings checked by the caller)."""
    if runtime == "onnxruntime":
        return time_onnxruntime(module, input_shape, threads=threads, warmup=warmup,
                                repeats=repeats)
    return time_torch(module, input_shape, device=device, threads=threads, warmup=warmup,
                      repeats=repeats)


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))
