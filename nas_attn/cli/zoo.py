"""``nas-attn zoo``: every registered attention module and variant with its params and FLOPs;
``--plugins`` lists the installed plugin entry points (nothing imported), ``--check NAME``
runs the conformance kit (:mod:`nas_attn.testing`) on one module."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from nas_attn.cli import app, console
from nas_attn.cli._options import AllowPlugins, PluginRefs, use_plugins


def zoo_rows(channels: int, size: tuple[int, int]) -> list[dict[str, Any]]:
    """One row per module and variant: gates on (1, C, H, W), conv modules as C -> C stride 1,
    fusion modules over 2 blocks. A configuration that cannot be built has ``error`` set."""
    from nas_attn.cost import profile_module
    from nas_attn.errors import ConfigError
    from nas_attn.modules import MODULES

    rows = []
    for name, entry in MODULES.items():
        for variant, hp in [("default", {}), *entry.variants.items()]:
            row: dict[str, Any] = {
                "module": name, "variant": variant, "kind": entry.kind,
                "hparams": dict(hp), "paper": entry.paper,
                "params": None, "flops": None, "error": None,
            }
            try:
                r = profile_module(name, channels, size, hp, num_blocks=2)
            except ConfigError as e:  # a configuration the module refuses at these channels
                row["error"] = str(e)
            else:
                row["params"], row["flops"] = r.params, r.flops
            rows.append(row)
    return rows


def _fmt(n: int | None, scale: float, unit: str) -> str:
    return "-" if n is None else f"{n / scale:,.3f}{unit}" if n >= scale else f"{n:,}"


@app.command("zoo")
def zoo(
    channels: Annotated[int, typer.Option("--channels", "-c", help="channels C")] = 64,
    size: Annotated[tuple[int, int], typer.Option("--size", help="spatial size H W")] = (32, 32),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    list_plugins: Annotated[bool, typer.Option(
        "--plugins", help="list the installed entry points of group nas_attn.plugins (nothing "
        "is imported)")] = False,
    check: Annotated[str | None, typer.Option(
        "--check", help="run the conformance kit on module NAME (exit 1 when a check fails)",
        metavar="NAME")] = None,
    plugin: PluginRefs = None,
    allow_plugins: AllowPlugins = False,
) -> None:
    """List every attention module and variant with params and FLOPs at C channels, H x W."""
    if list_plugins:
        _print_plugins(as_json, allow_plugins)
        return
    use_plugins(plugin, allow_plugins)
    if check is not None:
        _check(check, as_json)
        return
    from nas_attn.errors import ConfigError

    if channels < 1:
        raise ConfigError("--channels", channels, "expected a positive integer")
    if min(size) < 1:
        raise ConfigError("--size", list(size), "expected two positive integers H W")
    rows = zoo_rows(channels, tuple(size))
    if as_json:
        typer.echo(json.dumps({"channels": channels, "size": list(size), "modules": rows},
                              indent=2))
        return
    from rich.table import Table

    table = Table(title=f"attention zoo at C={channels}, {size[0]}x{size[1]} "
                        "(FLOPs: 1 multiply-add = 1, every op counted)")
    for col, just in (("module", "left"), ("variant", "left"), ("kind", "left"),
                      ("params", "right"), ("FLOPs", "right"), ("paper", "left")):
        table.add_column(col, justify=just, max_width=48)  # type: ignore[arg-type]
    for r in rows:
        flops = _fmt(r["flops"], 1e6, " M") if r["error"] is None else f"[red]{r['error']}[/]"
        table.add_row(r["module"], r["variant"], r["kind"], _fmt(r["params"], 1e6, " M"),
                      flops, r["paper"])
    console.print(table)


def _print_plugins(as_json: bool, allow: bool) -> None:
    from nas_attn.plugins import consent_from_env, entry_points

    eps = entry_points()
    allowed = allow or consent_from_env()
    if as_json:
        typer.echo(json.dumps({"entry_points": [vars(e) for e in eps], "allowed": allowed},
                              indent=2))
        return
    if not eps:
        console.print("no installed entry points of group nas_attn.plugins", highlight=False)
    for e in eps:
        console.print(f"{e.name}  {e.value}  ({e.distribution})", highlight=False,
                      soft_wrap=True)
    if eps and not allowed:
        console.print("not loaded: pass --allow-plugins (or set NAS_ATTN_ALLOW_PLUGINS=1) "
                      "to load them", highlight=False)


def _check(name: str, as_json: bool) -> None:
    from nas_attn.modules import get_module
    from nas_attn.testing import check_module

    get_module(name, field="--check")  # an unknown name is bad input (exit 2, names listed)
    report = check_module(name, raise_on_failure=False)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        console.print(str(report), highlight=False, soft_wrap=True, markup=False)
    if not report.ok:
        raise typer.Exit(1)
