"""Study files: loading, strict validation, resolved() and fingerprint_dict()."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from nas_attn.cli import main
from nas_attn.errors import ConfigError
from nas_attn.search.study import load_study, parse_study

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "studies").glob("*.yaml"))

BASE = {
    "name": "t",
    "space": {"backbone": "tiny", "stages": {"default": {"attention": ["none", "se", "eca"]}}},
    "data": {"name": "synthetic", "image_size": 16, "num_classes": 4},
    "train": {"epochs": 9},
}


def study(**over):
    return parse_study({**BASE, **over})


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_shipped_study_loads(path):
    s = load_study(path)
    assert s.name == path.stem
    assert s.space.size() > 0
    r = s.resolved()
    assert json.loads(json.dumps(r)) == r  # plain data
    assert yaml.safe_load(yaml.safe_dump(r)) == r
    assert r["space_hash"] == s.space.hash
    fp = s.fingerprint_dict()
    assert fp["objectives"] == [o.name for o in s.objectives]
    assert fp["space_hash"] == s.space.hash


def test_expected_shipped_studies_exist():
    assert {"quickstart", "resnet18_cifar", "se_integration", "mobilenetv2_ela"} <= {
        p.stem for p in STUDIES}


def test_quickstart_is_small():
    s = load_study(ROOT / "studies/quickstart.yaml")
    assert s.space.backbones == ("tiny",)
    # capacity is searched, so the front spans the FLOPs axis (docs/benchmarks.md, item 8)
    assert {k: d.size for k, d in s.space.searched_backbone_args.items()} == {"width": 2,
                                                                              "blocks": 2}
    assert s.space.constraints.network.max_flops >= 7.78e6  # refuses no network of the space
    assert s.data.name == "cluttered-digits"
    assert s.search.trials == 24 and s.train.epochs <= 8
    assert s.space.input_size == (3, s.data.image_size, s.data.image_size)


def test_defaults_and_resolved():
    s = study()
    assert [(o.name, o.direction) for o in s.objectives] == [("val_accuracy", "maximize"),
                                                              ("flops", "minimize")]
    assert s.rungs == [1, 3]  # grace 1, eta 3, below 9 epochs
    assert s.space.num_classes == 4 and s.space.input_size == (3, 16, 16)
    r = s.resolved()
    assert r["train"]["epochs"] == 9 and r["train"]["batch_size"] == 128
    assert r["data"]["num_classes"] == 4 and r["data"]["train_size"] == 2048  # defaults filled
    assert r["search"]["sampler"] == "tpe"
    assert r["early_stopping"]["rungs"] == [1, 3]


def test_fingerprint_tracks_what_makes_trials_comparable():
    a = study().fingerprint_dict()
    assert study(search={"trials": 99, "sampler": "random"}).fingerprint_dict() == a
    assert study(train={"epochs": 10}).fingerprint_dict() != a
    assert study(data={"name": "synthetic", "image_size": 16, "num_classes": 5}
                 ).fingerprint_dict() != a
    other_space = {"backbone": "tiny", "stages": {"default": {"attention": ["none", "se"]}}}
    assert study(space=other_space).fingerprint_dict()["space_hash"] != a["space_hash"]
    assert study(objectives=["val_accuracy", "params"]).fingerprint_dict()["objectives"] == [
        "val_accuracy", "params"]


def test_space_path_is_relative_to_the_study_file(tmp_path):
    (tmp_path / "spaces").mkdir()
    (tmp_path / "studies").mkdir()
    (tmp_path / "spaces/s.yaml").write_text("backbone: tiny\nstages: {default: {attention: se}}\n")
    (tmp_path / "studies/x.yaml").write_text(
        "space: ../spaces/s.yaml\ndata: {name: synthetic}\ntrain: {epochs: 2}\n")
    s = load_study(tmp_path / "studies/x.yaml")
    assert s.name == "x"
    assert s.space.size() == 1
    assert s.space_source == str(tmp_path / "studies/../spaces/s.yaml")


@pytest.mark.parametrize("over, field, needle", [
    ({"searh": {}}, "searh", "search"),
    ({"objectives": [{"name": "accuracy"}]}, "objectives[0].name", "val_accuracy"),
    ({"objectives": [{"name": "flops", "direction": "maximize"}]}, "objectives[0].direction",
     "minimize"),
    ({"objectives": ["flops", "flops"]}, "objectives[1].name", "twice"),
    ({"objectives": []}, "objectives", "non-empty"),
    ({"search": {"sampler": "cmaes"}}, "search.sampler", "nsga2"),
    ({"search": {"trials": 0}}, "search.trials", ">= 1"),
    ({"search": {"startup_trials": 0}}, "search.startup_trials", ">= 1"),
    ({"search": {"sampler": "nsga2", "startup_trials": 5}}, "search.startup_trials", "'gp'"),
    ({"search": {"learn_from_pruned": "yes"}}, "search.learn_from_pruned", "True"),
    ({"search": {"sampler": "random", "learn_from_pruned": True}}, "search.learn_from_pruned",
     "'gp'"),
    ({"search": {"gpus_per_trial": -1}}, "search.gpus_per_trial", ">= 0"),
    ({"search": {"workers": 2}}, "search.workers", "max_concurrent"),
    ({"early_stopping": {"eta": 1}}, "early_stopping.eta", ">= 2"),
    ({"early_stopping": {"grace_epochs": 20}}, "early_stopping.grace_epochs", "train.epochs"),
    ({"early_stopping": {"patience": 2}}, "early_stopping.patience", "grace_epochs"),
    ({"early_stopping": {"patience": 2}}, "early_stopping.patience", "promote"),
    ({"early_stopping": {"promote": "yes"}}, "early_stopping.promote", "True"),
    ({"early_stopping": {"stop_dominated": "yes"}}, "early_stopping.stop_dominated", "False"),
    ({"train": {"epochs": 0}}, "train.epochs", ">= 1"),
    ({"train": {"epoch": 3}}, "train.epoch", "epochs"),
    ({"data": {"name": "mnist"}}, "data.name", "cluttered-digits"),
    ({"name": "bad name!"}, "name", "letters"),
    ({"space": {"backbone": "tiny", "stages": {"default": {"attention": ["sse"]}}}},
     "space.stages.default.attention[0]", "'se'"),
    ({"space": {"backbone": "tiny", "stages": {"default": {"attention": {"se": {
        "rd_ratio": {"low": 0.1, "high": 0.2}}}}}}, "search": {"sampler": "grid"}},
     "search.sampler", "finite"),
])
def test_bad_study_names_the_field(over, field, needle):
    with pytest.raises(ConfigError) as e:
        study(**over)
    assert e.value.field == field
    assert needle in str(e.value)


def test_bad_space_file_error_names_the_space_file(tmp_path):
    (tmp_path / "s.yaml").write_text("backbone: tiny\nstages: {default: {position: [nowhere]}}\n")
    (tmp_path / "x.yaml").write_text("space: s.yaml\ndata: {name: synthetic}\n")
    with pytest.raises(ConfigError) as e:
        load_study(tmp_path / "x.yaml")
    assert e.value.field == f"{tmp_path / 's.yaml'}: stages.default.position[0]"


def test_study_yaml_syntax_error_names_file_and_line(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("name: x\nspace: s.yaml\ndata: {name: synthetic\n")
    with pytest.raises(ConfigError) as e:
        load_study(p)
    assert e.value.field.startswith(f"{p}:")


def test_cli_space_accepts_a_study_file():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["space", str(ROOT / "studies/se_integration.yaml"), "--json"])
    assert rc == 0
    r = json.loads(out.getvalue())
    assert r["mode"] == "exact" and r["size"] == 5 and r["valid"] == 5
    assert r["input_size"] == [3, 32, 32]
