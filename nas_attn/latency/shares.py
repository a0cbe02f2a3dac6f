"""What a zoo module costs within one stage: its share of the stage's FLOPs against its share of
the stage's latency (the table of docs/cost-model.md, ``benchmarks/bench_latency.py``).

For each module, the stage is built twice, plain and with the module (a gate at its default
position in every block, a conv module in place of every block's 3x3 conv, a fusion module over
the stage), and both stage modules are counted (:func:`nas_attn.cost.profile`) and timed
(:func:`nas_attn.cost.timing.time_module`, the latency table's settings) at the stage's own
input, the plain stage timed again right before each module (a pair, so that a machine whose
speed drifts moves both). A module's share is what it adds over the stage with it:
``(with - plain) / with``, in FLOPs and in milliseconds. A module the stage cannot hold is a row
with the reason instead of numbers, and so is one the runtime cannot run (onnxruntime: a module
that does not export to ONNX at that size).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.onnx_export import ExportError

# (backbone, stage index, input size): a ResNet-18-CIFAR stage and a MobileNetV2 stage
STAGES = (("resnet18_cifar", 1, (3, 32, 32)), ("mobilenetv2", 3, (3, 224, 224)))


def _choice(name: str) -> dict[str, Any]:
    from nas_attn.modules import get_module

    kind = get_module(name).kind
    if kind == "gate":
        return {"attention": {"type": name}, "blocks": "all"}
    return {kind: {"type": name}}


def _stage(backbone: str, stage: int, choice: dict[str, Any] | None,
           size: Sequence[int]) -> tuple[Any, tuple[int, ...]]:
    """The built stage module of ``backbone`` with ``choice`` at ``stage`` and its input."""
    from nas_attn.arch import canonicalize
    from nas_attn.backbones import get_backbone
    from nas_attn.cost.cells import cells_with_modules

    n = len(get_backbone(backbone).layout({}))
    stages: list[Any] = [None] * n
    stages[stage] = choice
    spec = canonicalize({"backbone": backbone, "num_classes": 10, "stages": stages})
    parts = list(cells_with_modules(spec, size, 1, device="cpu"))
    net = parts[0][1].net
    shape = next(s for c, _, s in parts if c.desc.get("stage") == stage)
    return net.stages[stage], shape


def module_shares(backbone: str, stage: int, size: Sequence[int], modules: Sequence[str], *,
                  runtime: str = "onnxruntime", threads: int = 1, warmup: int = 10,
                  repeats: int = 50, progress: Callable[[int, int, str], None] | None = None
                  ) -> list[dict[str, Any]]:
    """One row per module: FLOPs and ms of the stage plain and with it, and both shares."""
    from nas_attn.cost import profile
    from nas_attn.cost.timing import check_settings, time_module

    check_settings(runtime, "cpu", threads)

    def cost(module: Any, shape: tuple[int, ...]) -> tuple[float, float]:
        flops = float(profile(module, tuple(shape[1:])).flops)
        ms = time_module(module, shape, runtime=runtime, device="cpu", threads=threads,
                         warmup=warmup, repeats=repeats).median_ms
        return flops, ms

    plain = _stage(backbone, stage, None, size)
    plain_flops = float(profile(plain[0], tuple(plain[1][1:])).flops)
    rows = []
    for i, name in enumerate(modules):
        if progress:
            progress(i, len(modules), f"{backbone} stage {stage}: {name}")
        row: dict[str, Any] = {"backbone": backbone, "stage": stage, "module": name,
                               "plain_flops": plain_flops}
        try:
            module, shape = _stage(backbone, stage, _choice(name), size)
        except ConfigError as e:
            rows.append({**row, "skipped": e.reason})
            continue
        try:
            _, plain_ms = cost(*plain)  # timed next to the module's, so a drifting machine
            flops, ms = cost(module, shape)  # moves both
        except ExportError as e:  # e.g. an adaptive pool whose size does not divide the input
            rows.append({**row, "skipped": _first_sentence(str(e))})
            continue
        row["plain_ms"] = plain_ms
        rows.append({**row, "flops": flops, "ms": ms, "flops_share": (flops - plain_flops) / flops,
                     "latency_share": (ms - plain_ms) / ms})
    return rows


def _first_sentence(text: str, limit: int = 160) -> str:
    head = text.split(". ")[0].split("\n")[0]
    return head if len(head) <= limit else head[: limit - 3] + "..."


def shares_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as the markdown table of docs/cost-model.md."""
    out = ["| backbone, stage | module | share of FLOPs | share of latency | latency / FLOPs "
           "share |", "|---|---|---:|---:|---:|"]
    for r in rows:
        where = f"{r['backbone']} stage {r['stage']}"
        if "skipped" in r:
            out.append(f"| {where} | {r['module']} | - | - | n/a ({r['skipped']}) |")
            continue
        ratio = (f"{r['latency_share'] / r['flops_share']:.1f}x" if r["flops_share"] > 0
                 else "-")
        out.append(f"| {where} | {r['module']} | {r['flops_share']:.1%} | "
                   f"{r['latency_share']:.1%} | {ratio} |")
    return "\n".join(out)
