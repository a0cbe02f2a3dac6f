"""``nas-attn space FILE``: the dry run of a search space (or of a study file's space)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from nas_attn.cli import app, console
from nas_attn.cli._options import AllowPlugins, PluginRefs, use_plugins


def _fmt(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if v >= scale:
            return f"{v / scale:.3f} {unit}"
    return f"{v:.0f}"


@app.command("space")
def space_cmd(
    file: Annotated[Path, typer.Argument(help="search-space file (or a study file)")],
    samples: Annotated[int, typer.Option("--samples", min=1,
                                         help="random specs to profile when the space is too "
                                              "big to walk completely")] = 64,
    input_size: Annotated[
        tuple[int, int, int] | None,
        typer.Option("--input-size", help="C H W (default: the space's, else the backbone's)"),
    ] = None,
    exact_limit: Annotated[int, typer.Option("--exact-limit", min=0,
                                             help="walk every point of finite spaces up to "
                                                  "this size")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="seed of the random samples")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    plugin: PluginRefs = None,
    allow_plugins: AllowPlugins = False,
) -> None:
    """Dry run: size, impossible combinations (grouped by reason), FLOPs and params range,
    constraint violations and sample specs. Trains nothing."""
    use_plugins(plugin, allow_plugins)
    from nas_attn.search.study import load_space_or_study
    from nas_attn.space import dry_run

    space = load_space_or_study(file)
    r = dry_run(space, samples=samples, input_size=input_size, seed=seed,
                exact_limit=exact_limit)
    if as_json:
        typer.echo(json.dumps(r.to_dict(), indent=2))
        return
    from rich.table import Table

    how = (f"exact: every one of the {r.evaluated} points" if r.mode == "exact"
           else f"estimated from {r.evaluated} random samples (seed {seed})")
    t = Table(title=f"search space {r.name or file.name} (hash {r.space_hash})", show_header=False)
    t.add_column()
    t.add_column(justify="right")
    t.add_row("size (parameter assignments)", "infinite" if r.size == math.inf
              else f"{int(r.size):,}")
    t.add_row("evaluated", how)
    t.add_row("invalid combinations", f"{r.invalid} of {r.evaluated}")
    t.add_row("distinct valid specs", f"{r.unique_specs}")
    isz = "x".join(map(str, r.input_size))
    if r.flops and r.params:
        t.add_row(f"FLOPs at {isz}", f"{_fmt(r.flops[0])} .. {_fmt(r.flops[1])}")
        t.add_row("params", f"{_fmt(r.params[0])} .. {_fmt(r.params[1])}")
    if not space.constraints.empty:
        t.add_row("within constraints", f"{r.within_constraints} of {r.valid}")
    if space.constraints.max_latency_ms is not None:
        t.add_row("latency budget", f"{space.constraints.max_latency_ms:g} ms (checked by a "
                  "study with a latency table, not here)")
    console.print(t)
    if r.invalid_reasons:
        inv = Table(title="why combinations cannot be built")
        inv.add_column("count", justify="right")
        inv.add_column("reason")
        for reason, n in r.invalid_reasons.items():
            inv.add_row(str(n), reason)
        console.print(inv)
    if r.violations:
        vt = Table(title="constraint violations")
        vt.add_column("constraint")
        vt.add_column("specs", justify="right")
        for k, n in r.violations.items():
            vt.add_row(k, str(n))
        console.print(vt)
    for i, s in enumerate(r.samples):
        console.print(f"[bold]sample {i + 1}[/]: " + json.dumps(s["params"]), highlight=False,
                      soft_wrap=True)
