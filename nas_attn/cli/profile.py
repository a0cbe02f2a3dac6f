"""``nas-attn profile SPEC``: params, FLOPs (backbone / attention, per op and module), latency.

``--counter fvcore`` counts the FLOPs with fvcore's ``FlopCountAnalysis`` (nas-attn's handles
added, so the numbers are the same); ``--by-module`` prints fvcore's per-module table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nas_attn.cli import app, console
from nas_attn.cli._options import AllowPlugins, PluginRefs, use_plugins

if TYPE_CHECKING:
    from nas_attn.cost import ProfileResult
    from nas_attn.cost.fvcore import FvcoreResult

COUNTERS = ("nas-attn", "fvcore")


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
    counter: Annotated[str, typer.Option(
        "--counter", help="who counts the FLOPs: nas-attn (a dispatch-level counter) or fvcore "
        "(fvcore's FlopCountAnalysis with nas-attn's handles: the same numbers)")] = "nas-attn",
    by_module: Annotated[bool, typer.Option(
        "--by-module", help="also print fvcore's per-module table (params and FLOPs)")] = False,
    depth: Annotated[int, typer.Option("--depth", help="depth of the --by-module table")] = 3,
    plugin: PluginRefs = None,
    allow_plugins: AllowPlugins = False,
) -> None:
    """Count params and FLOPs of a spec (every attention op counted); optionally time it."""
    use_plugins(plugin, allow_plugins)
    from nas_attn.cost import profile
    from nas_attn.errors import ConfigError

    if not spec.is_file():
        raise ConfigError("SPEC", str(spec), "no such file")
    if counter not in COUNTERS:
        raise ConfigError("--counter", counter, "unknown FLOP counter", COUNTERS)
    if depth < 1:
        raise ConfigError("--depth", depth, "expected a positive integer")
    r = profile(spec, input_size, latency=latency, batch_size=batch_size, device=device,
                repeats=repeats)
    fv = None
    if counter == "fvcore" or by_module:
        from nas_attn.cost.fvcore import profile_fvcore

        fv = profile_fvcore(spec, r.input_size, max_depth=depth)
    if as_json:
        out = r.to_dict()
        if counter == "fvcore":
            assert fv is not None
            out.update(flops=fv.flops, backbone_flops=fv.backbone_flops,
                       attention_flops=fv.attention_flops, by_op=fv.by_op,
                       by_module=fv.by_module, unhandled=sorted(fv.unsupported),
                       counter="fvcore")
        if by_module:
            assert fv is not None
            out["module_table"] = fv.table
        typer.echo(json.dumps(out, indent=2))
        return
    _print_tables(spec, r, fv if counter == "fvcore" else None)
    if by_module:
        assert fv is not None
        console.print(f"FLOPs by module (fvcore's flop_count_table, depth {depth})")
        typer.echo(fv.table)


def _print_tables(spec: Path, r: ProfileResult, fv: FvcoreResult | None) -> None:
    """The summary, FLOPs by op and by attention module, counted by nas-attn or (``fv``) by
    fvcore."""
    from rich.table import Table

    c = fv if fv is not None else r
    by = ", counted by fvcore" if fv is not None else ""
    summary = Table(title=f"{spec.name} (hash {r.spec_hash}) at "
                    f"{'x'.join(map(str, r.input_size))}{by}", show_header=False)
    summary.add_column(justify="left")
    summary.add_column(justify="right")
    rows = [
        ("params", f"{r.params:,}"),
        ("  of which attention", f"{r.attention_params:,}"),
        ("FLOPs (1 multiply-add = 1)", f"{c.flops:,}"),
        ("  backbone", f"{c.backbone_flops:,}"),
        ("  attention", f"{c.attention_flops:,}"),
    ]
    if fv is None:
        rows.append(("conv + linear multiply-adds", f"{r.conv_linear_macs:,}"))
    if r.latency_ms is not None:
        rows.append((f"latency (median of {r.latency_repeats}, batch {r.batch_size}, {r.device})",
                     f"{r.latency_ms:.3f} ms"))
    missing = list(fv.unsupported) if fv is not None else list(r.unhandled)
    if missing:
        rows.append(("[red]ops without a FLOP handler[/]", ", ".join(missing)))
    for row in rows:
        summary.add_row(*row)
    console.print(summary)
    ops = Table(title="FLOPs by op" + (" (fvcore's names)" if fv is not None else ""))
    ops.add_column("op")
    ops.add_column("FLOPs", justify="right")
    ops.add_column("share", justify="right")
    for op, n in c.by_op.items():
        ops.add_row(op, f"{n:,}", f"{100 * n / max(c.flops, 1):.1f}%")
    console.print(ops)
    if c.by_module:
        mods = Table(title="attention FLOPs by module")
        mods.add_column("module")
        mods.add_column("FLOPs", justify="right")
        for name, n in c.by_module.items():
            mods.add_row(name, f"{n:,}")
        console.print(mods)
