"""A two-node Ray cluster on one machine (a head and a worker node, one CPU each), joined with
``nas-attn search --address``: trials are observed running on both nodes.

Each node is a ``ray start --block`` process in its own session with its own temp dir and free
ports, so the test never touches another Ray on the machine (no ``ray stop``: it kills every
Ray process of the user). Teardown kills the two process groups, then any process whose
command line names this test's temp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RAY = str(Path(sys.executable).with_name("ray"))


_GIVEN: set[int] = set()


def _free_port() -> int:
    """A free loopback port never handed out before in this session (a port closed right after
    binding can come back from the OS on the next call, and Ray refuses two components on one
    port)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def _node_args(temp: Path) -> list[str]:
    return ["--num-cpus", "1", "--block", "--disable-usage-stats",
            "--node-manager-port", str(_free_port()),
            "--object-manager-port", str(_free_port()),
            "--dashboard-agent-listen-port", str(_free_port()),
            "--dashboard-agent-grpc-port", str(_free_port()),
            "--metrics-export-port", str(_free_port()),
            "--runtime-env-agent-port", str(_free_port()),
            "--temp-dir", str(temp), "--object-store-memory", str(80 * 1024 * 1024)]


def _ours(tag: str) -> list[int]:
    """Pids of processes whose command line names this test's temp dir."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if tag.encode() in (d / "cmdline").read_bytes():
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def _raylet_node_ids(tag: str) -> set[str]:
    ids = set()
    for pid in _ours(tag):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"/raylet"):
            ids |= {a.split(b"=", 1)[1].decode() for a in args if a.startswith(b"--node_id=")}
    return ids


@pytest.fixture
def cluster(tmp_path_factory):
    # a short temp dir: Ray's socket paths must fit in 107 bytes
    temp = Path(f"/tmp/nasattn-cl-{os.getpid()}-{time.time_ns() % 10**8}")
    temp.mkdir()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    port = _free_port()
    log = tmp_path_factory.mktemp("cluster")
    procs = []
    try:
        procs.append(subprocess.Popen(
            [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--include-dashboard", "false",
             *_node_args(temp)],
            env=env, start_new_session=True, stdout=open(log / "head.log", "wb"),
            stderr=subprocess.STDOUT))
        _wait_nodes(temp, 1, procs, log)
        procs.append(subprocess.Popen(
            [RAY, "start", "--address", f"127.0.0.1:{port}", *_node_args(temp)],
            env=env, start_new_session=True, stdout=open(log / "worker.log", "wb"),
            stderr=subprocess.STDOUT))
        _wait_nodes(temp, 2, procs, log)
        yield f"127.0.0.1:{port}", str(temp)
    finally:
        for p in procs:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(p.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
                time.sleep(1 if sig == signal.SIGTERM else 0)
            p.wait(timeout=30)
        for pid in _ours(str(temp)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


def _wait_nodes(temp: Path, n: int, procs: list, log: Path) -> None:
    deadline = time.time() + 120
    while len(_raylet_node_ids(str(temp))) < n:
        for p in procs:
            assert p.poll() is None, "ray start exited: " + "".join(
                f.read_text(errors="replace")[-2000:] for f in log.glob("*.log"))
        assert time.time() < deadline, f"{n} Ray node(s) did not start in time"
        time.sleep(0.5)
    time.sleep(2)  # the raylet registers with the GCS right after it starts


def test_trials_run_on_both_nodes_of_a_two_node_cluster(tmp_path, cluster):
    import nas_attn

    address, tag = cluster
    study = tmp_path / "cluster.yaml"
    study.write_text("name: cluster\n"
                     "synthetic: {choices: 12, epochs: 2, epoch_seconds: 0.5}\n"
                     "search: {sampler: random, seed: 0}\n")
    run = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "nas_attn", "search", str(study), "--address", address,
         "--trials", "6", "--cpus-per-trial", "1", "--out", str(run), "--quiet"],
        env={**os.environ, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
        timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "finished 6/6" in res.stdout

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished"
    df = nas_attn.load_run(run).trials
    trained = df[(df["counts"] == True) & (df["reused"] != True)]  # noqa: E712
    assert len(trained) >= 2 and trained["node_id"].notna().all()
    nodes = _raylet_node_ids(tag)
    assert len(nodes) == 2
    assert set(trained["node_id"]) == nodes, (set(trained["node_id"]), nodes)
    assert "RUNNING" not in set(df["state"])


def test_local_runtime_listens_on_loopback_only():
    """The runtime ``nas-attn search`` starts without ``--address``: the node address is
    127.0.0.1 and no Ray process of it listens on any other interface."""
    import ray

    from nas_attn.search.execution import start_ray

    assert not ray.is_initialized()
    assert start_ray(None, 1)
    try:
        import psutil  # Ray ships it (ray/thirdparty_files)

        @ray.remote
        def where() -> str:
            return ray.util.get_node_ip_address()

        assert ray.get(where.remote()) == "127.0.0.1"
        assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
        listening = []
        for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
            try:
                conns = proc.net_connections(kind="inet")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            listening += [(proc.name(), c.laddr.ip) for c in conns
                          if c.status == psutil.CONN_LISTEN]
        names = {n for n, _ in listening}
        assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names)
        assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for _, ip in listening), \
            listening
    finally:
        ray.shutdown()


PLUGIN_GATE = '''\
"""A gate that exists only in the test's folder on the driver; it records where it was
imported from (the record is the test's window, not the way the code travels)."""
import os
import torch
from torch import nn
from nas_attn.modules import register_module

with open({log!r}, "a") as f:
    f.write(f"{{os.getpid()}} {{__file__}}\\n")


@register_module("driver_only_gate", kind="gate")
class DriverOnlyGate(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.w).view(1, -1, 1, 1)
'''


def test_a_plugin_on_the_driver_only_reaches_workers_on_both_nodes(tmp_path, cluster):
    """The plugin file lives in a folder only the driver is told about (not the working
    directory, not on any sys.path); the two nodes were started before it existed. Trials that
    build the plugin's module train on both nodes, and the workers import it from what Ray's
    runtime environment unpacked (py_modules), not from the driver's folder."""
    import nas_attn

    address, tag = cluster
    src = tmp_path / "driver_only"
    src.mkdir()
    log = tmp_path / "imports.log"
    plugin = src / "driver_only_gate.py"
    plugin.write_text(PLUGIN_GATE.format(log=str(log)))
    work = tmp_path / "work"
    work.mkdir()
    study = work / "plug.yaml"
    study.write_text(
        "name: plug\n"
        f"plugins: [{plugin}]\n"
        "space:\n  backbone: tiny\n  backbone_args: {width: 8, blocks: 1}\n  num_classes: 4\n"
        "  stages:\n    - {attention: {driver_only_gate: }, "
        "position: [post_bn, pre, post_add, identity, mid]}\n"
        "data: {name: synthetic, num_classes: 4, train_size: 64, val_size: 32, test_size: 32, "
        "image_size: 8}\n"
        "train: {epochs: 1, batch_size: 32, threads: 1}\n"
        "early_stopping: {enabled: false}\n"
        "search: {sampler: random, seed: 0}\n")
    run = work / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("NAS_ATTN_ALLOW_PLUGINS",)}
    res = subprocess.run(
        [sys.executable, "-m", "nas_attn", "search", str(study), "--address", address,
         "--trials", "4", "--cpus-per-trial", "1", "--out", str(run), "--quiet",
         "--allow-plugins"],
        cwd=work, env={**env, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
        timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "finished 4/4" in res.stdout, res.stdout[-3000:]

    df = nas_attn.load_run(run).trials
    trained = df[(df["counts"] == True) & (df["reused"] != True)]  # noqa: E712
    assert (trained["state"] == "COMPLETE").all(), trained[["state"]].to_string()
    assert set(trained["node_id"]) == _raylet_node_ids(tag)
    imports = [line.split(" ", 1) for line in log.read_text().splitlines()]
    worker_files = {f for pid, f in imports if f != str(plugin)}
    assert worker_files, imports  # every worker import came from elsewhere than the driver's
    assert all("runtime_resources" in f and "py_modules" in f for f in worker_files), imports
    assert str(plugin) in {f for _, f in imports}  # the driver imported its own file
