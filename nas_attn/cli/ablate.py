"""``nas-attn ablate BASE --design loo|ofat|factorial|swap``: train every arm with the same seeds
through Ray and report paired statistics, a forest plot and verdicts.

BASE is a spec file, an export bundle folder, a search run folder with ``--trial N``, or an
ablation study file (``studies/ablation_*.yaml``). ``nas-attn resume RUN_DIR`` finishes an
interrupted ablation (finished jobs are kept). Exit codes: 0 finished, 130 interrupted, 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nas_attn.cli import app, console, err_console
from nas_attn.cli._options import (
    Address,
    AllowPlugins,
    CpusPerTrial,
    GpusPerTrial,
    MaxConcurrent,
    NumCpus,
    NumGpus,
    PluginRefs,
    Quiet,
    RunOut,
    use_plugins,
)

FACTOR_HELP = ("a factor (default levels) or FACTOR=L1,L2,... (repeatable), e.g. "
               "stage1.attention, all.position=pre,post_add, stage2.attention.rd_ratio=[0.125,"
               "0.0625]")


def parse_factor_args(items: list[str]) -> list[str] | dict[str, list[Any] | None] | None:
    """``["stage1.attention", "all.position=pre,post_add"]`` -> factors for the design (a list
    when no levels are given, else a mapping with None for default levels). A value starting
    with ``[`` is read as one YAML list (for levels that contain commas)."""
    from nas_attn.errors import ConfigError
    from nas_attn.yamlio import loads_yaml

    if not items:
        return None
    out: dict[str, list[Any] | None] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not name:
            raise ConfigError("--factors", item, "expected FACTOR or FACTOR=L1,L2,...")
        if name in out:
            raise ConfigError("--factors", name, "factor given twice")
        if not sep:
            out[name] = None
            continue
        value = value.strip()
        levels = (loads_yaml(value, f"--factors {name}") if value.startswith("[")
                  else [loads_yaml(v.strip(), f"--factors {name}") for v in value.split(",")])
        if not isinstance(levels, list) or not levels:
            raise ConfigError("--factors", item, "expected a non-empty list of levels")
        out[name] = levels
    if all(v is None for v in out.values()):
        return list(out)
    return out


def _options(items: list[str] | None, field: str) -> dict[str, Any]:
    from nas_attn.cli.train import _parse_options

    return _parse_options(items or [], field)


def _config(base: Path, trial: int | None, overrides: dict[str, Any]) -> Any:
    from nas_attn.ablation.config import (
        AblationConfig,
        config_from_file,
        is_ablation_file,
        resolve_base,
    )
    from nas_attn.arch import spec_hash
    from nas_attn.errors import ConfigError

    if trial is None and is_ablation_file(base):
        return config_from_file(base, overrides)
    src = resolve_base(base, trial)
    values: dict[str, Any] = {"base": src.spec, "source": {"base": dict(src.source)},
                              "data": dict(src.data or {}), "train": dict(src.train or {})}
    for k, v in overrides.items():
        if v is None:
            continue
        if k == "data" and v.get("name", values["data"].get("name")) != values["data"].get("name"):
            values[k] = dict(v)
        elif k in ("data", "train"):
            values[k] = {**values[k], **v}
        else:
            values[k] = v
    if values.get("design") is None:
        raise ConfigError("--design", None, "say which design to run",
                          ["loo", "ofat", "factorial", "swap"])
    values.setdefault("name", f"ablation-{values['design']}-{spec_hash(src.spec)[:8]}")
    return AblationConfig(**values)


def print_summary(s: Any, quiet: bool) -> None:
    if quiet:
        console.print(f"{s.status} {s.complete}/{s.jobs} {s.run_dir}", highlight=False)
        return
    err_console.print(f"{s.status}: {s.complete}/{s.jobs} jobs complete, {s.failed} failed"
                      + (f" ({s.skipped} finished earlier)" if s.skipped else ""),
                      highlight=False)
    if s.message:
        err_console.print(s.message, highlight=False)
    for v in s.verdicts:
        console.print(v, highlight=False, soft_wrap=True)
    err_console.print(f"results: {s.run_dir}  (results.md, results.csv, plots.html, jobs.csv; "
                      f"in Python: nas_attn.load_ablation({str(s.run_dir)!r}))", highlight=False)
    if s.status == "interrupted":
        err_console.print(f"resume with: nas-attn resume {s.run_dir}", highlight=False)


@app.command("ablate")
def ablate_cmd(
    base: Annotated[Path | None, typer.Argument(
        help="spec file, export bundle folder, search run folder (with --trial) or ablation "
        "study file")] = None,
    design: Annotated[str | None, typer.Option("--design", help="loo, ofat, factorial or swap")]
    = None,
    factors: Annotated[list[str] | None, typer.Option("--factors", "-f", help=FACTOR_HELP)]
    = None,
    modules: Annotated[str | None, typer.Option(
        "--modules", help="swap: gate modules to try, comma-separated (default: all)")] = None,
    include_plain: Annotated[bool | None, typer.Option(
        "--include-plain", help="loo: also train the plain backbone")] = None,
    trial: Annotated[int | None, typer.Option("--trial", help="trial number (run folder BASE)")]
    = None,
    seeds: Annotated[str | None, typer.Option(
        "--seeds", help="K (seeds 0..K-1) or a list 0,3,7; every arm gets the same seeds")]
    = None,
    report: Annotated[str | None, typer.Option(
        "--report", help="val (default) or test: test accuracy, for final reports only")] = None,
    data: Annotated[str | None, typer.Option("--data", help="dataset name")] = None,
    data_root: Annotated[Path | None, typer.Option("--data-root")] = None,
    data_option: Annotated[list[str] | None, typer.Option(
        "--data-option", "-D", help="dataset setting KEY=VALUE (repeatable)")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    train_option: Annotated[list[str] | None, typer.Option(
        "--train-option", "-T", help="training setting KEY=VALUE (repeatable)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="names the study and folder")]
    = None,
    address: Address = None,
    num_cpus: NumCpus = None,
    num_gpus: NumGpus = None,
    max_concurrent: MaxConcurrent = None,
    cpus_per_trial: CpusPerTrial = None,
    gpus_per_trial: GpusPerTrial = None,
    out: RunOut = None,
    quiet: Quiet = False,
    plugin: PluginRefs = None,
    allow_plugins: AllowPlugins = False,
) -> None:
    """Ablate an architecture: train every arm of a design with paired seeds through Ray."""
    use_plugins(plugin, allow_plugins)
    from nas_attn.errors import ConfigError

    if base is None:
        raise ConfigError("BASE", None, "missing", ["a spec file", "an export bundle folder",
                                                   "a run folder with --trial N",
                                                   "an ablation study file"])
    dopts = _options(data_option, "--data-option")
    if data is not None:
        dopts["name"] = data
    if data_root is not None:
        dopts["root"] = str(data_root)
    topts = _options(train_option, "--train-option")
    topts.update({k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr))
                  if v is not None})
    overrides = {
        "name": name, "design": design, "factors": parse_factor_args(factors or []),
        "modules": [m.strip() for m in modules.split(",")] if modules else None,
        "include_plain": include_plain, "seeds": seeds, "report": report,
        "data": dopts or None, "train": topts or None, "max_concurrent": max_concurrent,
        "cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial,
    }
    cfg = _config(base, trial, overrides)
    if cfg.report == "test" and not quiet:
        err_console.print("reporting TEST accuracy: use it for final reports only, never to "
                          "choose between designs", highlight=False)
    from nas_attn.ablation.run import run_ablation

    s = run_ablation(cfg, out=out, address=address, num_cpus=num_cpus, quiet=quiet,
                     console=err_console, num_gpus=num_gpus)
    print_summary(s, quiet)
    if s.status == "interrupted":
        raise SystemExit(130)
