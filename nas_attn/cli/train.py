"""``nas-attn train SPEC --data NAME``: train one architecture, print per-epoch progress and the
final metrics with params and FLOPs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from nas_attn.cli import app, console, err_console
from nas_attn.cli._options import AllowPlugins, PluginRefs, use_plugins


def _parse_options(items: list[str], field: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, values read as YAML scalars (``3`` int, ``0.1`` float, ``true``)."""
    from nas_attn.errors import ConfigError
    from nas_attn.yamlio import loads_yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(field, item, "expected KEY=VALUE")
        out[key.strip()] = loads_yaml(value, f"{field} {key}")
    return out


@app.command("train")
def train_cmd(
    spec: Annotated[Path, typer.Argument(help="architecture spec (YAML or JSON file)")],
    data: Annotated[str, typer.Option("--data", help="dataset name")] = "cluttered-digits",
    data_root: Annotated[Path | None, typer.Option("--data-root", help="dataset folder")] = None,
    data_option: Annotated[list[str] | None, typer.Option(
        "--data-option", "-D", help="further dataset setting KEY=VALUE (repeatable), "
        "e.g. -D train_size=2000 -D seed=1")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="training seed")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU torch threads")] = None,
    test: Annotated[bool, typer.Option("--test", help="also report test accuracy")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="final metrics as JSON on stdout")]
    = False,
    plugin: PluginRefs = None,
    allow_plugins: AllowPlugins = False,
) -> None:
    """Train one spec on a dataset; searches select on validation, --test reports the test set."""
    use_plugins(plugin, allow_plugins)
    from nas_attn.arch import load_spec
    from nas_attn.data import DataConfig, load_dataset
    from nas_attn.errors import ConfigError
    from nas_attn.train import EpochResult, TrainConfig, train_spec

    if not spec.is_file():
        raise ConfigError("SPEC", str(spec), "no such file")
    arch = load_spec(spec)  # a bad spec is reported before the dataset is loaded
    dopts = _parse_options(data_option or [], "--data-option")
    if data_root is not None:
        dopts["root"] = str(data_root)
    for k in ("name",):
        if k in dopts:
            raise ConfigError(f"--data-option {k}", dopts[k], "use --data")
    from nas_attn.config import config_from_mapping

    dcfg = config_from_mapping(DataConfig, {"name": data, **dopts}, "data")
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
             "device": device, "threads": threads}
    tcfg = TrainConfig(**{k: v for k, v in given.items() if v is not None})
    out = err_console if as_json else console
    bundle = load_dataset(dcfg)
    out.print(bundle.summary(), highlight=False, soft_wrap=True)

    def progress(e: EpochResult) -> None:
        out.print(f"epoch {e.epoch:>3}/{tcfg.epochs}  train loss {e.train_loss:.4f}  "
                  f"val acc {e.val_accuracy:.4f}  val loss {e.val_loss:.4f}  "
                  f"{e.images_per_s:,.0f} img/s  {e.elapsed_s:.1f} s",
                  highlight=False, soft_wrap=True)

    result = train_spec(arch, bundle, tcfg, progress, evaluate_test=test)
    metrics: dict[str, Any] = {"spec": str(spec), "spec_hash": result.spec.hash,
                               "data": dcfg.resolved().to_dict(), "train": vars(tcfg),
                               **result.to_dict(), "params": result.num_params, "flops": None}
    del metrics["num_params"]
    try:
        from nas_attn.cost import profile

        metrics["flops"] = profile(result.spec, bundle.input_size).flops
    except ImportError:  # the cost model is optional for this command
        pass
    except Exception as e:  # never lose a finished training run to a counting problem
        out.print(f"[yellow]FLOPs not counted:[/] {e}", highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(metrics, indent=2))
        return
    flops = f"{metrics['flops']:,}" if metrics["flops"] is not None else "n/a"
    test_line = (f"  test acc {result.test_accuracy:.4f}" if result.test_accuracy is not None
                 else "")
    console.print(
        f"val acc {result.val_accuracy:.4f} (best {result.best_val_accuracy:.4f}){test_line}  "
        f"params {result.num_params:,}  FLOPs {flops}  "
        f"{result.epochs_trained} epochs in {result.train_time_s:.1f} s",
        highlight=False, soft_wrap=True)
