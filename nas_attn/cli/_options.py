"""The options several commands share, defined once so they mean one thing everywhere.

``--out``/``-o`` is always where the command writes (a run folder, a dashboard page, a bundle,
a latency table); the Ray options are the same for ``search``, ``resume`` and ``ablate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Address = Annotated[str | None, typer.Option(
    "--address", help="join a Ray cluster: auto, ray://HOST:PORT or HOST:PORT (default: a "
    "local runtime on 127.0.0.1)")]
NumCpus = Annotated[int | None, typer.Option(
    "--num-cpus", help="CPUs of the local Ray runtime (default: all)")]
NumGpus = Annotated[float | None, typer.Option(
    "--num-gpus", help="GPUs of the local Ray runtime (default: the CUDA devices seen; logical "
    "GPUs need no device)")]
CpusPerTrial = Annotated[float | None, typer.Option(
    "--cpus-per-trial", help="CPUs each trial reserves")]
GpusPerTrial = Annotated[float | None, typer.Option(
    "--gpus-per-trial", help="GPUs each trial reserves; a fraction shares a GPU (0.5 = two "
    "trials per GPU)")]
MaxConcurrent = Annotated[int | None, typer.Option(
    "--max-concurrent", help="trials at once (default: what the resources allow)")]
RunOut = Annotated[Path | None, typer.Option(
    "--out", "-o", help="run folder (default runs/<name>-<timestamp>)")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no live progress")]
PluginRefs = Annotated[list[str] | None, typer.Option(
    "--plugin", help="a plugin to load first: a .py file or a module (my_pkg.attn); "
    "repeatable; needs --allow-plugins")]
AllowPlugins = Annotated[bool, typer.Option(
    "--allow-plugins", help="consent to run user code: the --plugin files, the study's "
    "plugins: and installed entry points of group nas_attn.plugins (or NAS_ATTN_ALLOW_PLUGINS=1)")]


def use_plugins(refs: list[str] | None, allow: bool) -> None:
    """The first step of every command that builds models: consent, entry points, --plugin."""
    from nas_attn.plugins import activate

    activate(refs or [], allow=allow)
