"""Pretrained backbone weights (``backbone_weights``) and the fine-tuning recipe (issue 20 item 4).

The torchvision state dicts are written by the tests from torchvision's published layout (names
and shapes of ``resnet18``/``resnet50``/``mobilenet_v2``), without importing torchvision.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import pytest
import torch
from safetensors.torch import save_file

from nas_attn.arch import build_model, spec_hash
from nas_attn.backbones.mobilenetv2 import SETTINGS
from nas_attn.backbones.pretrained import new_parameter_names, weights_sha256
from nas_attn.errors import ConfigError
from nas_attn.modules._common import make_divisible
from nas_attn.train import TrainConfig, train_spec

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv(state: dict, name: str, cout: int, cin: int, k: int) -> None:
    state[f"{name}.weight"] = (cout, cin, k, k)


def _bn(state: dict, name: str, c: int) -> None:
    for p in BN:
        state[f"{name}.{p}"] = () if p == "num_batches_tracked" else (c,)


def torchvision_resnet(block: str, layers: tuple[int, ...], classes: int = 1000) -> dict:
    """{name: shape} of torchvision.models.resnet{18,34,50,101}."""
    s: dict = {}
    _conv(s, "conv1", 64, 3, 7)
    _bn(s, "bn1", 64)
    inp, exp = 64, (4 if block == "bottleneck" else 1)
    for i, n in enumerate(layers):
        planes = 64 * 2 ** i
        for b in range(n):
            p = f"layer{i + 1}.{b}"
            if block == "bottleneck":
                _conv(s, f"{p}.conv1", planes, inp, 1)
                _bn(s, f"{p}.bn1", planes)
                _conv(s, f"{p}.conv2", planes, planes, 3)
                _bn(s, f"{p}.bn2", planes)
                _conv(s, f"{p}.conv3", planes * 4, planes, 1)
                _bn(s, f"{p}.bn3", planes * 4)
            else:
                _conv(s, f"{p}.conv1", planes, inp, 3)
                _bn(s, f"{p}.bn1", planes)
                _conv(s, f"{p}.conv2", planes, planes, 3)
                _bn(s, f"{p}.bn2", planes)
            if b == 0 and (i > 0 or inp != planes * exp):
                _conv(s, f"{p}.downsample.0", planes * exp, inp, 1)
                _bn(s, f"{p}.downsample.1", planes * exp)
            inp = planes * exp
    s["fc.weight"], s["fc.bias"] = (classes, inp), (classes,)
    return s


def torchvision_mobilenet_v2(classes: int = 1000) -> dict:
    """{name: shape} of torchvision.models.mobilenet_v2 (width 1.0)."""
    s: dict = {}
    _conv(s, "features.0.0", 32, 3, 3)
    _bn(s, "features.0.1", 32)
    inp, k = 32, 1
    for t, c, n, _ in SETTINGS:
        out = make_divisible(c, 8)
        for _ in range(n):
            hidden, p, j = inp * t, f"features.{k}.conv", 0
            if t != 1:
                _conv(s, f"{p}.0.0", hidden, inp, 1)
                _bn(s, f"{p}.0.1", hidden)
                j = 1
            s[f"{p}.{j}.0.weight"] = (hidden, 1, 3, 3)  # depthwise
            _bn(s, f"{p}.{j}.1", hidden)
            _conv(s, f"{p}.{j + 1}", out, hidden, 1)
            _bn(s, f"{p}.{j + 2}", out)
            inp, k = out, k + 1
    _conv(s, f"features.{k}.0", 1280, inp, 1)
    _bn(s, f"features.{k}.1", 1280)
    s["classifier.1.weight"], s["classifier.1.bias"] = (classes, 1280), (classes,)
    return s


def fill(shapes: dict) -> dict:
    """Distinct, cheap values per tensor (so a wrong mapping shows)."""
    return {k: (torch.tensor(i, dtype=torch.int64) if shape == () else
                torch.full(shape, float(i % 97) / 97)) for i, (k, shape) in enumerate(shapes.items())}


@pytest.mark.parametrize(("backbone", "shapes"), [
    ("resnet18", torchvision_resnet("basic", (2, 2, 2, 2))),
    ("resnet50", torchvision_resnet("bottleneck", (3, 4, 6, 3))),
    ("mobilenetv2", torchvision_mobilenet_v2()),
])
def test_torchvision_state_dict_loads_with_no_key_left_over(backbone, shapes, tmp_path):
    state = fill(shapes)
    path = tmp_path / "tv.safetensors"
    save_file(state, str(path))
    model = build_model({"backbone": backbone, "num_classes": 1000,
                         "backbone_weights": str(path)})
    loaded = model.pretrained
    assert loaded.left_out == ()
    assert len(loaded.loaded) == len(state) == len(model.state_dict())
    names = model.backbone_names()
    own = model.state_dict()
    for k, t in state.items():
        assert torch.equal(own[names[k]], t), k
    assert loaded.sha256 == weights_sha256(path)


def test_attention_and_a_resized_classifier_keep_their_own_initialisation(tmp_path):
    state = fill(torchvision_resnet("basic", (2, 2, 2, 2)))
    path = tmp_path / "tv.pt"
    torch.save(state, path)  # a plain state dict, read with weights_only=True
    spec = {"backbone": "resnet18", "num_classes": 10,
            "stages": [{"attention": "se"}, {"conv": "rfaconv"}]}
    torch.manual_seed(3)
    scratch = build_model(spec)
    torch.manual_seed(3)
    model = build_model({**spec, "backbone_weights": str(path)})
    assert spec_hash(model.spec) == spec_hash(scratch.spec)  # same architecture, same hash
    left = model.pretrained.left_out
    assert any(x.startswith("fc.weight [1000, 512]") for x in left)
    assert any(x.startswith("layer2.0.conv1.weight") for x in left)  # replaced by rfaconv
    ours, theirs = model.state_dict(), scratch.state_dict()
    new = new_parameter_names(model, model.pretrained)
    assert "fc.weight" in new and any(".attn.post_bn." in k for k in new)
    for k in new:
        assert torch.equal(ours[k], theirs[k]), k
    assert torch.equal(ours["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])


def test_mismatched_weights_name_every_missing_unexpected_and_misshaped_key(tmp_path):
    state = fill(torchvision_resnet("basic", (2, 2, 2, 2)))
    del state["layer3.1.bn2.running_var"]
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    state["bn1.weight"] = torch.zeros(7)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(ConfigError) as e:
        build_model({"backbone": "resnet18", "num_classes": 1000,
                     "backbone_weights": str(path)})
    msg = str(e.value)
    assert e.value.field.startswith("backbone_weights") and str(path) in e.value.field
    assert "missing: layer3.1.bn2.running_var" in msg
    assert "does not have: layer9.0.conv1.weight" in msg
    assert "bn1.weight [7] (network: [64])" in msg


def test_a_weights_file_that_is_not_there_or_pickles_code_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no such file") as e:
        build_model({"backbone": "tiny", "backbone_weights": str(tmp_path / "none.pt")})
    assert e.value.field == "backbone_weights"
    torch.save({"w": argparse.Namespace(x=1)}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="nothing from it was run"):
        build_model({"backbone": "tiny", "backbone_weights": str(tmp_path / "evil.pt")})


def test_a_spec_file_names_weights_relative_to_itself(tmp_path):
    plain = build_model({"backbone": "tiny"})
    save_file(plain.state_dict(), str(tmp_path / "w.safetensors"))
    (tmp_path / "spec.yaml").write_text("backbone: tiny\nbackbone_weights: w.safetensors\n")
    model = build_model(tmp_path / "spec.yaml")
    assert model.spec.backbone_weights == str(tmp_path / "w.safetensors")
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------
# the fine-tuning recipe


@pytest.mark.parametrize(("settings", "field"), [
    ({"backbone_lr_mult": 0}, "train.backbone_lr_mult"),
    ({"backbone_lr_mult": "low"}, "train.backbone_lr_mult"),
    ({"freeze": ["head"]}, "train.freeze"),
    ({"freeze": ["stem", "stem"]}, "train.freeze"),
])
def test_bad_fine_tuning_settings_name_the_field(settings, field):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**settings)
    assert e.value.field == field


@pytest.fixture(scope="module")
def tiny_data():
    from nas_attn.data import load_dataset

    return load_dataset({"name": "synthetic", "image_size": 8, "train_size": 64, "val_size": 32,
                         "test_size": 32, "num_classes": 10})


def test_frozen_stages_do_not_move_and_new_modules_learn_faster(tiny_data, tmp_path):
    spec = {"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 1},
            "stages": [{"attention": "se"}]}
    before = build_model(spec).state_dict()
    save_file(before, str(tmp_path / "w.safetensors"))
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.1, freeze=("stem", "stage0"),
                      backbone_lr_mult=0.1, threads=1)
    result = train_spec({**spec, "backbone_weights": str(tmp_path / "w.safetensors")},
                        tiny_data, cfg)
    after = result.model.state_dict()
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
              "layer1.0.bn1.running_var"):
        assert torch.equal(after[k], before[k]), k  # frozen: weights and BN statistics
    assert not torch.equal(after["layer2.0.conv1.weight"], before["layer2.0.conv1.weight"])
    se = [k for k in after if ".attn.post_bn." in k and k.startswith("layer1")]
    assert se and not all(torch.equal(after[k], before[k]) for k in se)  # new: trainable
    with pytest.raises(ConfigError, match="3 stages") as e:
        train_spec(spec, tiny_data, dataclasses.replace(cfg, freeze=("stage3",)))
    assert e.value.field == "train.freeze" and "stage2" in e.value.choices


def test_param_groups_scale_the_backbone_against_the_new_modules():
    from nas_attn.backbones.pretrained import make_optimizer

    model = build_model({"backbone": "tiny", "stages": [{"attention": "se"}]})
    opt = make_optimizer(model, TrainConfig(lr=0.2, backbone_lr_mult=0.25))
    by_mult = {g["lr_mult"]: g for g in opt.param_groups}
    assert by_mult[0.25]["lr"] == pytest.approx(0.05) and by_mult[1.0]["lr"] == 0.2
    new = {id(p) for k, p in model.named_parameters()
           if k in new_parameter_names(model, None)}
    assert {id(p) for p in by_mult[1.0]["params"]} == new  # zoo modules + scratch classifier
    assert len(opt.param_groups[0]["params"]) + len(new) == len(list(model.parameters()))


# ---------------------------------------------------------------------------------------------
# the fingerprint and the model card


def test_the_weights_sha256_joins_the_study_fingerprint(tmp_path):
    from nas_attn.search.study import parse_study

    plain = build_model({"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 1}})
    save_file(plain.state_dict(), str(tmp_path / "w.safetensors"))
    raw = {"name": "ft", "backbone_weights": "w.safetensors",
           "space": {"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 1}},
           "data": {"name": "synthetic", "image_size": 8}}
    study = parse_study(raw, base_dir=tmp_path)
    fp = study.fingerprint_dict()
    assert fp["backbone_weights_sha256"] == weights_sha256(tmp_path / "w.safetensors")
    assert study.resolved()["backbone_weights"] == str(tmp_path / "w.safetensors")
    state = plain.state_dict()
    state["fc.bias"] = state["fc.bias"] + 1
    os.remove(tmp_path / "w.safetensors")
    save_file(state, str(tmp_path / "w.safetensors"))
    assert parse_study(raw, base_dir=tmp_path).fingerprint_dict() != fp
    save_file({"fc.bias": state["fc.bias"]}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ConfigError, match=r"missing: bn1\.bias"):  # checked before any trial
        parse_study(raw, base_dir=tmp_path)


def test_the_model_card_names_the_weights_and_the_bundle_loads_without_them(tmp_path):
    from nas_attn.export import export_bundle, load

    spec = {"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 1}}
    plain = build_model(spec)
    save_file(plain.state_dict(), str(tmp_path / "w.safetensors"))
    model = build_model({**spec, "backbone_weights": str(tmp_path / "w.safetensors")})
    out = export_bundle(model.spec, model, tmp_path / "b", metadata={}, input_size=(3, 16, 16))
    import json

    card = json.loads((out / "card.json").read_text())
    assert card["backbone_weights"]["sha256"] == weights_sha256(tmp_path / "w.safetensors")
    assert "backbone_weights" not in card["spec"]
    assert "Pretrained backbone" in (out / "MODEL_CARD.md").read_text()
    os.remove(tmp_path / "w.safetensors")  # the bundle needs only its own weights
    back = load(out)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(back(x), model.eval()(x))


# ---------------------------------------------------------------------------------------------
# the command line: exit 2, the field named, nothing written


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "search"])
def test_cli_mismatched_weights_exit_2_name_the_tensors_and_write_nothing(command, tmp_path):
    from cli_helpers import assert_refused

    state = build_model({"backbone": "tiny"}).state_dict()
    del state["conv1.weight"]
    save_file(state, str(tmp_path / "w.safetensors"))
    (tmp_path / "spec.yaml").write_text("backbone: tiny\nbackbone_weights: w.safetensors\n")
    (tmp_path / "study.yaml").write_text(
        "name: ft\nbackbone_weights: w.safetensors\nspace: {backbone: tiny}\n"
        "data: {name: synthetic, image_size: 8}\n")
    args = {"train": ["train", "spec.yaml", "--data", "synthetic", "--data-option",
                      "image_size=8", "--epochs", "1"],
            "search": ["search", "study.yaml", "--trials", "1"]}[command]
    assert_refused(args, tmp_path, "backbone_weights", "missing: conv1.weight")
