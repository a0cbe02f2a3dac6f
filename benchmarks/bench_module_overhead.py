"""What each zoo module costs in training time, relative to the block without it.

For every module (and variant): forward + backward time of a block with the module, divided by
the same block without it. Gates sit at ``post_bn``; conv modules replace the block's 3x3 conv;
fusion modules wrap a stage of two blocks (compared with the same two blocks unfused).

Settings: a BasicBlock at C=64 on 32x32 and a Bottleneck at C=256 (width 64) on 14x14, batch 32
by default; CPU, and CUDA when available.

    python benchmarks/bench_module_overhead.py [--batch 32] [--repeats 5] [--modules se eca]
                                               [--devices cpu cuda] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

SETTINGS = (
    # (block, inplanes, planes, H) -> post_bn channels: planes * expansion
    ("basic", 64, 64, 32),
    ("bottleneck", 256, 64, 14),
)


def _block(kind: str, inplanes: int, planes: int, entry: Any, hp: dict[str, Any]):
    from nas_attn.arch import ModuleChoice
    from nas_attn.backbones._net import BlockPlan, Stage, make_fusion
    from nas_attn.backbones.blocks import BasicBlock, Bottleneck

    cls = BasicBlock if kind == "basic" else Bottleneck
    choice = ModuleChoice(entry.name, hp) if entry is not None else None
    if entry is not None and entry.kind == "fusion":
        blocks = [cls(inplanes, planes), cls(inplanes, planes)]
        return Stage(blocks, make_fusion(choice, planes * cls.expansion, 2))
    if entry is not None and entry.kind == "conv":
        return cls(inplanes, planes, plan=BlockPlan(conv=choice))
    gates = {"post_bn": choice} if choice is not None else {}
    return cls(inplanes, planes, plan=BlockPlan(gates=gates))


def _plain(kind: str, inplanes: int, planes: int, fusion: bool):
    from nas_attn.backbones._net import Stage
    from nas_attn.backbones.blocks import BasicBlock, Bottleneck

    cls = BasicBlock if kind == "basic" else Bottleneck
    if fusion:
        return Stage([cls(inplanes, planes), cls(inplanes, planes)])
    return cls(inplanes, planes)


def time_fwd_bwd(model, x, repeats: int, warmup: int = 2) -> float:
    """Median ms of forward + backward (sum of the output) over ``repeats`` runs."""
    import torch

    def sync() -> None:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    model.train()
    times = []
    for i in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        model(x).sum().backward()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    return statistics.median(times) * 1000.0


def run(batch: int, repeats: int, modules: list[str] | None, devices: list[str]) -> list[dict]:
    import torch

    from nas_attn.errors import ConfigError
    from nas_attn.modules import MODULES

    rows = []
    for dev in devices:
        for kind, inplanes, planes, h in SETTINGS:
            x = torch.randn(batch, inplanes, h, h, device=dev)
            base = {f: time_fwd_bwd(_plain(kind, inplanes, planes, f).to(dev), x, repeats)
                    for f in (False, True)}
            for name, entry in MODULES.items():
                if modules and name not in modules:
                    continue
                for variant, hp in [("default", {}), *entry.variants.items()]:
                    row = {"device": dev, "block": kind, "channels": planes * (
                        4 if kind == "bottleneck" else 1), "size": h, "batch": batch,
                        "module": name, "variant": variant, "kind": entry.kind}
                    try:
                        model = _block(kind, inplanes, planes, entry, dict(hp)).to(dev)
                    except ConfigError as e:  # a configuration the module refuses here
                        rows.append({**row, "error": str(e)})
                        continue
                    ms = time_fwd_bwd(model, x, repeats)
                    ref = base[entry.kind == "fusion"]
                    rows.append({**row, "ms": round(ms, 3), "baseline_ms": round(ref, 3),
                                 "relative": round(ms / ref, 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--modules", nargs="*", default=None, help="only these modules")
    ap.add_argument("--devices", nargs="*", default=None, help="default: cpu, and cuda if any")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = run(args.batch, args.repeats, args.modules, devices)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"forward+backward time relative to the block without the module "
                        f"(batch {args.batch}, median of {args.repeats})")
    for col in ("device", "block", "C x H", "module", "variant", "kind", "ms", "base ms", "x"):
        table.add_column(col, justify="right" if col in ("ms", "base ms", "x") else "left")
    for r in rows:
        tail = ([f"{r['ms']:.2f}", f"{r['baseline_ms']:.2f}", f"{r['relative']:.2f}"]
                if "ms" in r else ["-", "-", f"[red]{r['error']}[/]"])
        table.add_row(r["device"], r["block"], f"{r['channels']} x {r['size']}", r["module"],
                      r["variant"], r["kind"], *tail)
    Console(width=140).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
