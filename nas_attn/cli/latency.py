"""``nas-attn latency build|validate``: a measured latency table per device and runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nas_attn.cli import app, console
from nas_attn.cli._options import AllowPlugins, PluginRefs, use_plugins

latency_app = typer.Typer(help="Latency tables: time every cell of a space once, then predict.",
                          no_args_is_help=True)
app.add_typer(latency_app, name="latency")


def _progress(description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[note]}"), console=console, transient=True)
    task = bar.add_task(description, total=None, note="")

    def update(done: int, total: int, note: str) -> None:
        bar.update(task, completed=done, total=total, note=note)

    return bar, update


@latency_app.command("build")
def build_cmd(
    file: Annotated[Path, typer.Argument(help="search-space file or study file")],
    runtime: Annotated[str, typer.Option("--runtime", help="torch or onnxruntime")
                       ] = "onnxruntime",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda")] = "cpu",
    threads: Annotated[int, typer.Option("--threads", help="intra-op threads (fixed)")] = 1,
    batch: Annotated[int, typer.Option("--batch", help="batch size of every timing")] = 1,
    input_size: Annotated[tuple[int, int, int] | None, typer.Option(
        "--input-size", help="C H W (default: the study's data, else the space's)")] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="untimed runs per cell")] = 10,
    repeats: Annotated[int, typer.Option("--repeats", help="timed runs per cell (median)")] = 50,
    calibrate: Annotated[int, typer.Option(
        "--calibrate", help="whole networks timed to fit the correction")] = 40,
    seed: Annotated[int, typer.Option("--seed", help="seed of the calibration specs")] = 0,
    granularity: Annotated[str, typer.Option(
        "--granularity", help="what one timed cell is: stage (stem, each whole stage, head) or "
        "cell (blocks)")] = "stage",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="table file (default: FILE's stem + .latency.json)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted build")
                      ] = False,
    plugin: PluginRefs = None,
    allow_plugins: AllowPlugins = False,
) -> None:
    """Time every cell (stem, each stage or each block with every choice, head) of a space."""
    use_plugins(plugin, allow_plugins)
    from nas_attn.latency import build_table
    from nas_attn.search.study import load_space_or_study

    space = load_space_or_study(file)
    target = out or file.with_name(f"{file.stem}.{runtime}-{device}-t{threads}.latency.json")
    bar, update = _progress("timing cells")
    with bar:
        table = build_table(space, target, runtime=runtime, device=device, threads=threads,
                            batch=batch, input_size=input_size, warmup=warmup, repeats=repeats,
                            calibrate=calibrate, seed=seed, resume=resume,
                            granularity=granularity, progress=update)
    c = table.correction
    cv = (c.get("cv") or {}).get(c["model"])
    fitted = (f", leave-one-out {cv['within_10pct']:.0%} within +-10 %, mean |error| "
              f"{cv['mean_abs_error']:.1%}" if cv else "")
    console.print(f"{len(table.cells)} {granularity} cells, overhead {table.overhead_ms:.4f} "
                  f"ms per call, correction model {c['model']}{fitted} -> {target}")


@latency_app.command("validate")
def validate_cmd(
    table_file: Annotated[Path, typer.Argument(help="latency table (from `latency build`)")],
    file: Annotated[Path, typer.Option("--space", help="the space or study file it was built "
                                       "for")],
    specs: Annotated[int, typer.Option("--specs", help="random whole networks to time")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="seed of the specs (not the calibration's)")
                    ] = 1,
    as_json: Annotated[Path | None, typer.Option("--json", help="also write the report here")
                       ] = None,
    repeat_spread: Annotated[int, typer.Option(
        "--repeat-spread", help="also time --spread-specs networks this many times each: the "
        "run-to-run spread of one network's median (0: skip)")] = 0,
    spread_specs: Annotated[int, typer.Option("--spread-specs", help="networks for the spread")
                            ] = 10,
    plugin: PluginRefs = None,
    allow_plugins: AllowPlugins = False,
) -> None:
    """Time random whole networks end to end and report the prediction's error distribution."""
    from nas_attn.config import check_int

    use_plugins(plugin, allow_plugins)
    from nas_attn.cost.latency_table import check_fingerprint, load_table
    from nas_attn.cost.timing import fingerprint
    from nas_attn.errors import ConfigError
    from nas_attn.files import write_atomically
    from nas_attn.latency import repeat_spread as spread_of
    from nas_attn.latency import validate_table
    from nas_attn.search.study import load_space_or_study

    check_int(specs, "specs", low=1)
    check_int(spread_specs, "spread-specs", low=1)
    if repeat_spread < 0 or repeat_spread == 1:
        raise ConfigError("repeat-spread", repeat_spread, "times each network is timed: 0 "
                          "(skip) or at least 2", [0, 2, 5])
    table = load_table(table_file)
    s = table.settings
    check_fingerprint(table, fingerprint(s["runtime"], s["device"], s["threads"]))
    space = load_space_or_study(file)
    bar, update = _progress("timing networks")
    with bar:
        report = validate_table(table, space, specs, seed, progress=update)
        spread = (spread_of(table, space, spread_specs, repeat_spread, progress=update)
                  if repeat_spread else None)
    console.print(f"{report.summary()['specs']} specs, model {table.correction['model']}: "
                  + error_line(report.summary()))
    for model, m in report.models.items():
        console.print(f"  refitted {model}: " + error_line(m))
    if spread:
        console.print(f"spread of one network's median ({spread['times']} times x "
                      f"{len(spread['rows'])} networks): " + error_line(spread["summary"]))
    if as_json:
        text = json.dumps({"table": str(table_file), "settings": dict(s),
                           "fingerprint": dict(table.fingerprint), **report.to_dict(),
                           **({"spread": spread} if spread else {})}, indent=1)
        write_atomically(as_json, lambda tmp: tmp.write_text(text + "\n"))


def error_line(m: dict) -> str:
    """One line of an error distribution (:func:`nas_attn.cost.latency_model.error_summary`)."""
    return (f"{m['within_10pct']:.0%} within +-10 %, median |error| {m['median_abs_error']:.1%}, "
            f"p95 {m['p95_abs_error']:.1%}, max {m['max_abs_error']:.1%}, mean "
            f"{m['mean_error']:+.1%}")
