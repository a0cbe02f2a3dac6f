"""A search over a factory backbone from pretrained weights, through the command line as a user
runs it: search (Ray workers import the factory through the plugin shipping), the dashboard,
export (safetensors + ONNX), ``nas_attn.load`` of the bundle and a paired-seed ablation of a
trial (issue 20 items 3 and 4)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.slow]

MODELS = Path(__file__).with_name("backbone_models.py")


def _run(args, cwd):
    from cli_helpers import run_cli

    env = {k: v for k, v in os.environ.items() if k != "NAS_ATTN_ALLOW_PLUGINS"}
    res = run_cli(args, cwd, env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    return res


def test_search_dashboard_export_and_load_of_a_pretrained_factory_backbone(tmp_path):
    import torch
    from safetensors.torch import save_file

    from nas_attn import plugins
    from nas_attn.backbones.pretrained import weights_sha256

    args = {"factory": f"{MODELS}:small_cnn", "kwargs": {"width": 8}, "input_size": [16, 16],
            "stages": "features.*", "blocks": "features.*",
            "positions": {"post_bn": {"after": "features.*.1"}}, "replace": "features.*.0",
            "classifier": "head.2"}
    small_cnn = plugins.import_ref(f"{MODELS}:small_cnn", allowed=True)
    save_file(small_cnn(width=8, num_classes=1000).state_dict(), str(tmp_path / "cnn.safetensors"))
    study = {"name": "factory", "backbone_weights": "cnn.safetensors",
             "space": {"backbone": "factory", "backbone_args": args,
                       "stages": {"default": {"attention": {"none": None, "se": None}}}},
             "data": {"name": "synthetic", "image_size": 16, "train_size": 64, "val_size": 32,
                      "test_size": 32, "num_classes": 4},
             "train": {"epochs": 1, "batch_size": 16, "threads": 1, "backbone_lr_mult": 0.1,
                       "freeze": ["stem"]},
             "early_stopping": {"enabled": False},
             "search": {"trials": 2, "max_concurrent": 2, "sampler": "random"}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    _run(["search", "study.yaml", "--out", "run", "--num-cpus", "2", "--allow-plugins"],
         tmp_path)
    run = tmp_path / "run"
    resolved = yaml.safe_load((run / "study.yaml").read_text())
    assert resolved["backbone_weights"] == str(tmp_path / "cnn.safetensors")
    import nas_attn

    df = nas_attn.load_run(run).trials
    assert len(df) == 2 and set(df["state"]) == {"COMPLETE"}, df[["state", "fail_reason"]]
    assert all(json.loads(s)["backbone"] == "factory" for s in df["spec"])
    _run(["dashboard", "run", "--out", "dash.html"], tmp_path)
    assert (tmp_path / "dash.html").stat().st_size > 0
    _run(["export", "run", "--pick", "knee", "--out", "knee", "--allow-plugins"], tmp_path)
    bundle = run / "exports" / "knee"  # --out is relative to the run's exports/
    card = json.loads((bundle / "card.json").read_text())
    assert card["backbone_weights"]["sha256"] == weights_sha256(tmp_path / "cnn.safetensors")
    assert (bundle / "model.onnx").is_file()
    os.environ[plugins.ALLOW_ENV] = "1"
    try:
        model = nas_attn.load(bundle)
    finally:
        del os.environ[plugins.ALLOW_ENV]
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    # an ablation of a trial of the run: its arms train through Ray on the factory backbone
    _run(["ablate", "run", "--trial", "0", "--design", "ofat", "-f", "stage0.attention=none,se",
          "--seeds", "1", "--out", "abl", "--num-cpus", "2", "--allow-plugins"], tmp_path)
    jobs = nas_attn.load_ablation(tmp_path / "abl")
    assert len(jobs) >= 2 and set(jobs["state"]) == {"COMPLETE"}, jobs[["arm", "state"]]
    assert jobs["val_accuracy"].between(0, 1).all()
    assert all(json.loads(s)["backbone"] == "factory" for s in jobs["spec"])
