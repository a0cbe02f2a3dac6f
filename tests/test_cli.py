"""The command-line shell: usage errors exit 2 with a message, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas_attn.cli import main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("zoo", "profile", "space", "train", "search", "resume", "dashboard", "export",
                "ablate"):
        assert cmd in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["search"], "Missing argument"), (["zoo", "--channels", "abc"], "Invalid value"),
     (["no-such-command"], "No such command")],
)
def test_usage_errors_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_config_error_is_one_line_exit_2(tmp_path, capsys):
    assert main(["profile", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "missing.yaml" in err and "Traceback" not in err


@pytest.mark.parametrize(("extra", "needle"), [
    (["--startup-trials", "0"], "search.startup_trials: must be an integer >= 1"),
    (["--sampler", "nsga2", "--startup-trials", "5"], "not 'nsga2'"),
    (["--sampler", "random", "--learn-from-pruned"], "search.learn_from_pruned"),
])
def test_search_refuses_a_bad_startup_before_starting_anything(extra, needle, tmp_path, capsys):
    out = tmp_path / "run"
    study = Path(__file__).resolve().parents[1] / "studies" / "quickstart.yaml"
    assert main(["search", str(study), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not out.exists()  # nothing half-written


_EXIT_CODE_CLI = """
import sys

import typer

from nas_attn.cli import app, main


@app.command("exit-with")
def exit_with(code: int) -> None:
    print("ending with", code)
    raise typer.Exit(code)


sys.exit(main())
"""


@pytest.mark.parametrize("code", [0, 3])
def test_typer_exit_code_reaches_the_shell(code, tmp_path):
    """typer 0.29 returns (does not raise) a command's ``typer.Exit(code)`` under
    ``standalone_mode=False``; ``main`` must hand it on to the process exit status."""
    import os
    import subprocess
    import sys

    script = tmp_path / "cli.py"
    script.write_text(_EXIT_CODE_CLI)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, str(script), "exit-with", str(code)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == code, done.stderr
    assert f"ending with {code}" in done.stdout
