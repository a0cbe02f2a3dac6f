"""The command-line shell: usage errors exit 2 with a message, never a traceback."""

from __future__ import annotations

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
