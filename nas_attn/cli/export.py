"""``nas-attn export RUN_DIR --pick ...``: picked trials of a search as export bundles.

Weights come from the trials' checkpoints (kept by the search) or, without one, from training
the spec again with the run's settings; ``--retrain`` trains from scratch with ``--epochs`` and
``--seeds`` and writes the per-seed table, mean and 95% CI into the card. Exit codes: 0 written,
2 bad input (one red line; nothing is written), 130 interrupted (nothing is left behind).
See docs/export.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nas_attn.cli import app, console, err_console
from nas_attn.cli._options import AllowPlugins, PluginRefs, use_plugins

PICK_HELP = ("knee, max-accuracy, min-flops, flops<=X (4e7, 40M, 1.5G), trial=N or front; "
             "repeat --pick for several")


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a search run folder (has run.json)")],
    pick: Annotated[list[str] | None, typer.Option("--pick", "-p", help=PICK_HELP)] = None,
    out: Annotated[str | None, typer.Option(
        "--out", "-o", help="bundle path (one bundle) or folder of bundles (several), "
        "relative to --root and inside it (default: trial-<N>)")] = None,
    root: Annotated[Path | None, typer.Option(
        "--root", help="folder the bundles are written inside (default RUN_DIR/exports)")
    ] = None,
    retrain: Annotated[bool, typer.Option(
        "--retrain", help="train the picks from scratch (ignores checkpoints)")] = False,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="with --retrain: epochs (default: the study's)")] = None,
    seeds: Annotated[str, typer.Option(
        "--seeds", help="with --retrain: K (K seeds from the study's) or a list 0,3,7; mean "
        "and 95% CI need 2 or more")] = "1",
    force: Annotated[bool, typer.Option(
        "--force", help="replace an existing bundle (never a folder that is not one)")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the paths")] = False,
    plugin: PluginRefs = None,
    allow_plugins: AllowPlugins = False,
) -> None:
    """Export picked trials of a search run as bundles (spec, weights, ONNX, model card)."""
    use_plugins(plugin, allow_plugins)
    from nas_attn.export.from_run import export_from_run

    def say(msg: str) -> None:
        if not quiet:
            err_console.print(msg, highlight=False)

    paths = export_from_run(run_dir, pick or [], out=out, retrain=retrain, epochs=epochs,
                            seeds=seeds, force=force, root=root, say=say)
    for p in paths:
        console.print(str(p), highlight=False, soft_wrap=True)
    if not quiet:
        err_console.print(f"{len(paths)} bundle(s) written; load one with "
                          f"nas_attn.load({str(paths[0])!r})", highlight=False, soft_wrap=True)
