"""The command line as a user meets it, for the tests of bad input: run ``nas-attn`` in a
subprocess and check exit 2, the field named on stderr, no traceback, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


def run_cli(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    env.setdefault("RAY_AUTH_MODE", "disabled")
    return subprocess.run([sys.executable, "-m", "nas_attn", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=480, env=env)


def assert_refused(args: Sequence[str], cwd: Path, *fields: str,
                   env: Mapping[str, str] | None = None) -> str:
    """Exit 2, every ``fields`` string on stderr, no traceback, ``cwd`` unchanged."""
    before = listing(cwd)
    res = run_cli(args, cwd, env)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-2000:]
    for f in fields:
        assert f in res.stderr, (f, out[-2000:])
    assert "Traceback" not in out, out[-2000:]
    assert listing(cwd) == before, "something was written"
    return res.stderr
