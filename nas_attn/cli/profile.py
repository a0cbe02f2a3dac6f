"""``nas-attn profile SPEC``: params, FLOPs (backbone / attention, per op and module), latency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nas_attn.cli import app, console


@app.command("profile")
def profile_cmd(
    spec: Annotated[Path, typer.Argument(help="architecture spec (YAML or JSON file)")],
    input_size: Annotated[
        tuple[int, int, int] | None,
        typer.Option("--input-size", help="C H W (default: the backbone's natural input)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    latency: Annotated[bool, typer.Option("--latency", help="also time forward passes")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="batch for latency")] = 1,
    device: Annotated[str, typer.Option("--device", help="device for latency")] = "cpu",
    repeats: Annotated[int, typer.Option("--repeats", help="timed passes (median)")] = 20,
) -> None:
    """Count params and FLOPs of a spec (every attention op counted); optionally time it."""
    from nas_attn.cost import profile
    from nas_attn.errors import ConfigError

    if not spec.is_file():
        raise ConfigError("SPEC", str(spec), "no such file")
    r = profile(spec, input_size, latency=latency, batch_size=batch_size, device=device,
                repeats=repeats)
    if as_json:
        typer.echo(json.dumps(r.to_dict(), indent=2))
        return
    from rich.table import Table

    summary = Table(title=f"{spec.name} (hash {r.spec_hash}) at {'x'.join(map(str, r.input_size))}",
                    show_header=False)
    summary.add_column(justify="left")
    summary.add_column(justify="right")
    rows = [
        ("params", f"{r.params:,}"),
        ("  of which attention", f"{r.attention_params:,}"),
        ("FLOPs (1 multiply-add = 1)", f"{r.flops:,}"),
        ("  backbone", f"{r.backbone_flops:,}"),
        ("  attention", f"{r.attention_flops:,}"),
        ("conv + linear multiply-adds", f"{r.conv_linear_macs:,}"),
    ]
    if r.latency_ms is not None:
        rows.append((f"latency (median of {r.latency_repeats}, batch {r.batch_size}, {r.device})",
                     f"{r.latency_ms:.3f} ms"))
    if r.unhandled:
        rows.append(("[red]ops without a FLOP handler[/]", ", ".join(r.unhandled)))
    for row in rows:
        summary.add_row(*row)
    console.print(summary)
    ops = Table(title="FLOPs by op")
    ops.add_column("op")
    ops.add_column("FLOPs", justify="right")
    ops.add_column("share", justify="right")
    for op, n in r.by_op.items():
        ops.add_row(op, f"{n:,}", f"{100 * n / max(r.flops, 1):.1f}%")
    console.print(ops)
    if r.by_module:
        mods = Table(title="attention FLOPs by module")
        mods.add_column("module")
        mods.add_column("FLOPs", justify="right")
        for name, n in r.by_module.items():
            mods.add_row(name, f"{n:,}")
        console.print(mods)
