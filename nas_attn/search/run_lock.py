"""One live driver per run folder: ``driver.lock``, held with ``flock`` for the driver's life.

``nas-attn search --out RUN`` and ``nas-attn resume RUN`` take the lock before they write
anything; a second driver on the same folder is refused with the pid and host of the one that
holds it (:class:`RunBusyError`, exit 2). The kernel releases the lock when its process ends,
however it ends (``kill -9`` included), so a lock left by a killed driver is stale by
construction and the next driver simply takes it over; the file's contents (pid, host, start
time) only serve the refusal message. A run folder shared between hosts needs a file system
whose locks work across them (local disks, NFSv4).

The lock is also what makes :func:`nas_attn.search.ownership.reconcile` safe: a driver holding
a run's lock knows that run's earlier driver is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError

LOCK_FILE = "driver.lock"


class RunBusyError(ConfigError):
    """The run folder is in use by a live driver (named by pid and host)."""


def holder(run_dir: Path) -> dict[str, Any]:
    """What ``driver.lock`` says about its holder ({} when unreadable or empty)."""
    try:
        data = json.loads((Path(run_dir) / LOCK_FILE).read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _busy(run_dir: Path) -> RunBusyError:
    who: dict[str, Any] = {}
    for _ in range(20):  # the holder writes its name right after taking the lock
        who = holder(run_dir)
        if who:
            break
        time.sleep(0.05)
    pid, host = who.get("pid", "?"), who.get("host", "?")
    since = f" since {who['started_at']}" if who.get("started_at") else ""
    return RunBusyError("RUN_DIR", str(run_dir),
                        f"in use by a live driver (pid {pid} on host {host}{since}); wait for "
                        "it to end or stop it, then run nas-attn resume on this folder")


@contextlib.contextmanager
def hold(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Hold the run folder's driver lock for the block; :class:`RunBusyError` when another
    live driver holds it. Yields what the lock file records about this driver."""
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(run_dir) from None
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        try:
            yield me
        finally:
            os.ftruncate(fd, 0)  # released: nobody to name
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
