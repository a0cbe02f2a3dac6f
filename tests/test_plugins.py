"""Plugins (nas_attn.plugins): consent before any import, import errors with file and line, a
clash naming both origins, optional declarations, entry points listed without importing, the
source hash in the study fingerprint, and what a Ray worker is sent."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from nas_attn import plugins as P
from nas_attn.errors import ConfigError
from nas_attn.modules import MODULES, get_module

GATE = """\
import pathlib
import torch
from torch import nn
from nas_attn.modules import register_module

pathlib.Path({marker!r}).write_text("imported")


@register_module({name!r}, kind="gate")
class ScaleGate(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(channels))
        self.b = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.w.view(1, -1, 1, 1) * x.mean((2, 3), keepdim=True)
                                 + self.b.view(1, -1, 1, 1))
"""


PLUG_STUDY = """\
name: plug
plugins: [scale_gate.py]
space:
  backbone: tiny
  backbone_args: {width: 8, blocks: 1}
  num_classes: 4
  stages:
    - {attention: {none: , scale_gate: }, position: [post_bn]}
data: {name: synthetic, num_classes: 4, train_size: 32, val_size: 16, test_size: 16,
       image_size: 8}
train: {epochs: 1, batch_size: 16, threads: 1}
early_stopping: {enabled: false}
search: {sampler: grid, trials: 2}
"""


@pytest.fixture(autouse=True)
def clean_plugins(monkeypatch):
    """Each test starts without plugins or consent and leaves none behind; plugins that other
    tests of the session loaded (a factory backbone's file) are set aside meanwhile."""
    monkeypatch.delenv(P.ALLOW_ENV, raising=False)
    before = dict(P._LOADED)
    P._LOADED.clear()
    path = list(sys.path)
    yield
    for plugin in P.loaded_plugins():
        P.unload(plugin)
    P._LOADED.clear()
    P._LOADED.update(before)
    P._CONSENT[0] = False
    sys.path[:] = path


def _gate_file(folder: Path, stem: str = "scale_gate", name: str = "scale_gate") -> Path:
    f = folder / f"{stem}.py"
    f.write_text(GATE.format(marker=str(folder / f"{stem}.imported"), name=name))
    return f


def test_no_consent_refuses_before_importing(tmp_path):
    f = _gate_file(tmp_path)
    with pytest.raises(ConfigError) as e:
        P.load_plugins([str(f)], allowed=False)
    assert e.value.field == "plugins" and e.value.value == str(f)
    assert P.ALLOW_FLAG in str(e.value) and P.ALLOW_ENV in str(e.value)
    assert not (tmp_path / "scale_gate.imported").exists()
    assert "scale_gate" not in MODULES
    with pytest.raises(ConfigError, match="--allow-plugins"):
        P.import_ref(f"{f}:ScaleGate", allowed=False)
    assert not (tmp_path / "scale_gate.imported").exists()


def test_consent_from_the_environment(monkeypatch):
    assert not P.consent_from_env() and not P.consented()
    monkeypatch.setenv(P.ALLOW_ENV, "1")
    assert P.consent_from_env() and P.consented()
    monkeypatch.setenv(P.ALLOW_ENV, "0")
    assert not P.consent_from_env()


def test_file_plugin_registers_with_origin_hash_and_params_from_meta(tmp_path):
    f = _gate_file(tmp_path)
    [plugin] = P.load_plugins([str(f)], allowed=True)
    assert plugin.module == "scale_gate" and plugin.origin == str(f) == plugin.ship
    assert plugin.registered == ("attention module 'scale_gate'",)
    import hashlib

    assert plugin.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    entry = get_module("scale_gate")
    assert entry.params is None and entry.hparams.names() == []
    assert entry.param_count(48) == 96  # built on the meta device: w and b
    assert MODULES.origin("scale_gate") == str(f)
    # a second load imports nothing again (no duplicate registration)
    again = P.load_plugin(str(f), allowed=True)
    assert again.sha256 == plugin.sha256 and P.loaded_plugins() == [plugin]
    assert P.import_ref(f"{f}:ScaleGate", allowed=True) is entry.cls
    with pytest.raises(ConfigError) as e:
        P.import_ref(f"{f}:Nope", allowed=True)
    assert "ScaleGate" in e.value.choices


def test_plugin_costs_without_declarations(tmp_path):
    from nas_attn.cost import profile, profile_module

    P.load_plugins([str(_gate_file(tmp_path))], allowed=True)
    r = profile_module("scale_gate", 16, (8, 8), strict=True)
    assert r.params == 32 and r.flops > 0 and r.unhandled == ()
    spec = {"backbone": "tiny", "num_classes": 10,
            "stages": [None, {"attention": {"type": "scale_gate"}, "position": "post_bn"}]}
    p = profile(spec)
    assert p.attention_params == 2 * 2 * 32  # two blocks of stage 1, 32 channels, w and b
    assert p.attention_flops > 0


def test_unhandled_op_named_in_strict_mode(tmp_path):
    from nas_attn.cost import UnhandledOpsError, profile_module

    f = tmp_path / "lgamma_gate.py"
    f.write_text(textwrap.dedent("""\
        import torch
        from nas_attn.modules import register_module

        @register_module("lgamma_gate", kind="gate")
        class LGammaGate(torch.nn.Module):
            def __init__(self, channels: int) -> None:
                super().__init__()

            def forward(self, x):
                return x * torch.lgamma(x.abs() + 1)
        """))
    P.load_plugins([str(f)], allowed=True)
    with pytest.raises(UnhandledOpsError, match="aten::lgamma"):
        profile_module("lgamma_gate", 8, (4, 4), strict=True)


def test_import_error_names_file_and_line(tmp_path):
    bad = tmp_path / "broken_gate.py"
    bad.write_text("import torch\n\nx = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(ConfigError) as e:
        P.load_plugins([str(bad)], allowed=True)
    assert f"{bad}:4" in str(e.value) and "RuntimeError: boom" in str(e.value)
    assert "broken_gate" not in sys.modules
    syntax = tmp_path / "syntax_gate.py"
    syntax.write_text("def f(:\n    pass\n")
    with pytest.raises(ConfigError, match=f"{syntax}:1"):
        P.load_plugins([str(syntax)], allowed=True)
    with pytest.raises(ConfigError, match="plugin file not found"):
        P.load_plugins([str(tmp_path / "missing.py")], allowed=True)
    with pytest.raises(ConfigError, match="no such plugin file or module"):
        P.load_plugins(["no_such_pkg_xyz.attn"], allowed=True)


def test_clash_with_the_zoo_names_both_origins(tmp_path):
    f = _gate_file(tmp_path, stem="se_again", name="se")
    with pytest.raises(ConfigError) as e:
        P.load_plugins([str(f)], allowed=True)
    msg = str(e.value)
    assert "attention module 'se'" in msg
    assert str(Path("nas_attn/modules/se.py")) in msg and f"{f}:" in msg
    assert get_module("se").cls.__module__ == "nas_attn.modules.se"  # the zoo's is kept


def test_failed_plugin_leaves_no_registration(tmp_path):
    f = tmp_path / "half_gate.py"
    f.write_text(GATE.format(marker=str(tmp_path / "m"), name="half_ok")
                 + "\nraise ValueError('after registering')\n")
    with pytest.raises(ConfigError, match="after registering"):
        P.load_plugins([str(f)], allowed=True)
    assert "half_ok" not in MODULES


def test_package_plugin_hashes_every_file_and_ships_the_package(tmp_path):
    pkg = tmp_path / "my_attn_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("SCALE = 1\n")
    (pkg / "gates.py").write_text(GATE.format(marker=str(tmp_path / "m"), name="pkg_gate"))
    sys.path.insert(0, str(tmp_path))
    [plugin] = P.load_plugins(["my_attn_pkg.gates"], allowed=True)
    assert plugin.module == "my_attn_pkg.gates" and plugin.ship == str(pkg)
    assert P.ray_py_modules([plugin]) == [str(pkg)]
    first = plugin.sha256
    (pkg / "helpers.py").write_text("SCALE = 2\n")  # a file the plugin does not import
    assert P.source_sha256(pkg) != first


def test_entry_points_listed_without_importing_and_loaded_only_when_allowed(tmp_path):
    site = tmp_path / "site"
    (site / "ep_attn-1.0.dist-info").mkdir(parents=True)
    (site / "ep_attn-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ep-attn\nVersion: 1.0\n")
    (site / "ep_attn-1.0.dist-info" / "entry_points.txt").write_text(
        "[nas_attn.plugins]\nep_gate = ep_attn_mod\n")
    _gate_file(site, stem="ep_attn_mod", name="ep_gate")
    sys.path.insert(0, str(site))
    assert [(e.name, e.value, e.distribution) for e in P.entry_points()] == [
        ("ep_gate", "ep_attn_mod", "ep-attn")]
    assert P.load_entry_points(allowed=False) == []
    assert P.activate([], allow=False) == []
    assert not (site / "ep_attn_mod.imported").exists() and "ep_gate" not in MODULES
    [plugin] = P.activate([], allow=True)
    assert plugin.module == "ep_attn_mod" and "ep_gate" in MODULES


def test_study_plugins_join_the_fingerprint(tmp_path):
    from nas_attn.search.fingerprint import differences
    from nas_attn.search.study import load_study

    f = _gate_file(tmp_path)
    study = tmp_path / "study.yaml"
    study.write_text(PLUG_STUDY)
    with pytest.raises(ConfigError) as e:
        load_study(study)
    assert str(study) in e.value.field and "--allow-plugins" in str(e.value)
    assert not (tmp_path / "scale_gate.imported").exists()
    P._CONSENT[0] = True
    cfg = load_study(study)
    fp = cfg.fingerprint_dict()
    assert fp["plugins"] == [{"module": "scale_gate",
                              "sha256": P.source_sha256(f)}]
    assert cfg.resolved()["plugins"] == [str(f)]
    f.write_text(f.read_text() + "\n# tuned\n")
    assert differences(fp, load_study(study).fingerprint_dict()) == ["plugins"]


def test_worker_refuses_source_that_differs_from_the_drivers(tmp_path):
    f = _gate_file(tmp_path)
    [plugin] = P.load_plugins([str(f)], allowed=True)
    shipped = {**plugin.to_json(), "sha256": "0" * 64}
    with pytest.raises(ConfigError, match="differs from the driver's"):
        P.load_shipped([shipped])
    assert P.load_shipped([plugin.to_json()])[0].sha256 == plugin.sha256


def test_execution_ships_loaded_plugins(tmp_path):
    from nas_attn.search.execution import plugin_runtime_env, shipped_plugins

    assert plugin_runtime_env() is None
    f = _gate_file(tmp_path)
    P.load_plugins([str(f)], allowed=True)
    assert plugin_runtime_env() == {"py_modules": [str(f)]}
    assert [p["module"] for p in shipped_plugins()] == ["scale_gate"]


def test_plugin_module_passes_the_kit(tmp_path):
    from nas_attn.testing import check_module

    P.load_plugins([str(_gate_file(tmp_path))], allowed=True)
    assert check_module("scale_gate").ok


@pytest.mark.ray
@pytest.mark.slow
def test_search_with_a_plugin_then_resume_detects_the_edit(tmp_path):
    """A real (two-trial) search of a study naming a plugin; ``resume`` needs consent again,
    and after the plugin is edited it is refused with ``plugins`` among what differs."""
    import os
    import subprocess

    f = _gate_file(tmp_path)
    study = tmp_path / "study.yaml"
    study.write_text(PLUG_STUDY)
    run = tmp_path / "run"
    env = {**{k: v for k, v in os.environ.items() if k != P.ALLOW_ENV},
           "RAY_AUTH_MODE": "disabled"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nas_attn", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=400)

    res = cli("search", str(study), "--out", str(run), "--quiet", "--num-cpus", "1",
              "--allow-plugins")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "finished 2/2" in res.stdout
    import yaml

    assert yaml.safe_load((run / "study.yaml").read_text())["plugins"] == [str(f)]
    res = cli("resume", str(run), "--quiet", "--num-cpus", "1")
    assert res.returncode == 2 and "--allow-plugins" in res.stderr, res.stderr[-2000:]
    f.write_text(f.read_text() + "\n# tuned after the search\n")
    res = cli("resume", str(run), "--quiet", "--num-cpus", "1", "--allow-plugins")
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "different setup" in res.stderr and "plugins" in res.stderr, res.stderr[-2000:]
