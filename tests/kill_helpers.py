"""Interrupting a ``nas-attn`` driver in a subprocess (kill -9, Ctrl-C, SIGTERM) at a moment
the test detects from what the run writes, for the resume tests (tests/test_search_resume.py,
tests/test_oneshot_kill.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "nas_attn", *args]


def env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "disabled"}


def start(*args: str) -> subprocess.Popen:
    """``nas-attn ARGS`` in its own session (its Ray daemons share the process group)."""
    return subprocess.Popen(cli(*args), env=env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def interrupt_when(proc: subprocess.Popen, ready: Callable[[], bool], sig: int,
                   what: str, group: bool = False, timeout_s: float = 180,
                   poll_s: float = 0.2) -> bytes:
    """Send ``sig`` once ``ready()`` (to the driver, or its whole process group with
    ``group``), wait for it to end and kill what is left of its group; its output."""
    deadline = time.time() + timeout_s
    try:
        while not ready():
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.time() < deadline, f"{what}: not reached in time"
            time.sleep(poll_s)
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        try:  # Ray daemons the killed driver started (same session); ours to clean up
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return out
