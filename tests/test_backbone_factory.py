"""Any nn.Module factory as a backbone (issue 20 item 3): a torchvision-style ResNet-50, a small
user CNN and a network whose forward has Python control flow, all defined in
tests/backbone_models.py (no torchvision)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nas_attn import plugins
from nas_attn.arch import build_model, canonicalize, spec_hash
from nas_attn.backbones.factory import factory_layout
from nas_attn.cost import profile
from nas_attn.errors import ConfigError, SpecError

MODELS = Path(__file__).with_name("backbone_models.py")
R50_ARGS = {
    "factory": f"{MODELS}:resnet50", "input_size": [32, 32], "stages": "layer*",
    "positions": {"post_bn": {"after": "layer*.*.bn3"}, "pre": {"before": "layer*.*.conv1"}},
    "replace": "layer*.*.conv2", "classifier": "fc",
}
CNN_ARGS = {
    "factory": f"{MODELS}:small_cnn", "kwargs": {"width": 8}, "input_size": [16, 16],
    "stages": "features.*", "blocks": "features.*",
    "positions": {"post_bn": {"after": "features.*.1"}}, "replace": "features.*.0",
    "classifier": "head.2",
}
LOOP_ARGS = {
    "factory": f"{MODELS}:looping_net", "input_size": [16, 16], "stages": "blocks",
    "positions": {"post_bn": {"after": "blocks.*.1"}, "pre": {"before": "blocks.*.0"}},
    "classifier": "fc",
}


@pytest.fixture(autouse=True)
def _consent(monkeypatch):
    monkeypatch.setenv(plugins.ALLOW_ENV, "1")


def spec(args, stages=(), num_classes=10, **extra):
    return {"backbone": "factory", "backbone_args": dict(args), "num_classes": num_classes,
            "stages": list(stages), **extra}


def test_resnet50_layout_is_inferred_on_the_meta_device():
    from nas_attn.backbones.factory_args import check_factory_args

    lay = factory_layout(check_factory_args(R50_ARGS))
    assert lay.stages == ("layer1", "layer2", "layer3", "layer4")
    assert [len(b) for b in lay.blocks] == [3, 4, 6, 3]
    assert lay.blocks[2][1].path == "layer3.1"
    infos = lay.infos()
    assert [i.blocks[0].positions["post_bn"] for i in infos] == [256, 512, 1024, 2048]
    assert [i.blocks[0].positions["pre"] for i in infos] == [64, 256, 512, 1024]
    assert [i.blocks[0].conv for i in infos] == [(64, 64, 1), (128, 128, 2), (256, 256, 2),
                                                 (512, 512, 2)]
    assert infos[1].blocks[1].conv == (128, 128, 1)
    assert lay.blocks[3][0].points["post_bn"].shape == (1, 2048, 1, 1)  # 32x32 input
    assert lay.in_chans == 3 and lay.num_classes == 1000 and not infos[0].fusion


@pytest.mark.parametrize("stages", [
    [],
    [{"attention": "se"}, {"attention": "eca", "position": "pre", "blocks": [0, 2]},
     {"conv": "rfaconv"}, {"attention": "cbam", "blocks": "last"}],
])
def test_factory_resnet50_costs_exactly_what_the_builtin_resnet50_costs(stages):
    """Same network, same insertion points: the same parameters and every op's FLOPs."""
    ours = profile(spec(R50_ARGS, stages), input_size=(3, 32, 32))
    builtin = profile({"backbone": "resnet50", "num_classes": 10, "stages": stages},
                      input_size=(3, 32, 32))
    assert (ours.params, ours.attention_params, ours.flops, ours.attention_flops) == (
        builtin.params, builtin.attention_params, builtin.flops, builtin.attention_flops)
    assert _merged(ours.by_op) == _merged(builtin.by_op)
    if not stages:
        assert profile(spec(R50_ARGS, num_classes=1000)).params == 25_557_032  # torchvision's


def _merged(by_op):
    """FLOPs per op, in-place and out-of-place forms together (torchvision's blocks use
    ReLU(inplace=True) for the final ReLU, nas-attn's ``torch.relu``)."""
    out: dict[str, int] = {}
    for op, n in by_op.items():
        out[op.rstrip("_")] = out.get(op.rstrip("_"), 0) + n
    return out


def test_the_spec_canonicalizes_and_hashes_like_any_spec():
    s = spec(R50_ARGS, [{"attention": {"type": "se", "reduction": 16}}])
    canon = canonicalize(s)
    assert canonicalize(canon) == canon
    args = canon.backbone_args
    assert args["stages"] == ["layer*"] and args["kwargs"] == {} and args["blocks"] is None
    listed = {**R50_ARGS, "stages": ["layer*"], "kwargs": {}}
    assert spec_hash(spec(listed, [{"attention": {"type": "se", "rd_ratio": 1 / 16}}])) == \
        spec_hash(s)
    assert spec_hash(spec({**R50_ARGS, "kwargs": {"width": 32}}, s["stages"])) != spec_hash(s)


def test_a_small_user_cnn_trains_exports_and_loads(tmp_path):
    from nas_attn.data import load_dataset
    from nas_attn.export import export_bundle, load
    from nas_attn.train import train_spec

    s = spec(CNN_ARGS, [{"attention": "se"}, {"conv": "rfaconv"}], num_classes=4)
    data = load_dataset({"name": "synthetic", "image_size": 16, "train_size": 32,
                         "val_size": 16, "test_size": 16, "num_classes": 4})
    result = train_spec(s, data, {"epochs": 1, "batch_size": 16, "threads": 1})
    model = result.model
    names = dict(model.attention_modules())
    assert set(names) == {"net.features.1.0", "inserted.after:features:0:1"}
    assert model.net.head[2].out_features == 4  # resized classifier
    out = export_bundle(model.spec, model, tmp_path / "b", metadata={})
    assert (out / "model.onnx").is_file() and (out / "weights.safetensors").is_file()
    assert "NAS_ATTN_ALLOW_PLUGINS=1" in (out / "LOADING.md").read_text()
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(load(out)(x), model.eval()(x))


def test_loading_a_bundle_reimports_the_factory_only_with_consent(tmp_path, monkeypatch):
    from nas_attn.export import export_bundle, load

    fresh = tmp_path / "bundle_models.py"  # a module of its own, unloaded below like a
    shutil.copy(MODELS, fresh)  # new process that has not imported it
    model = build_model(spec({**CNN_ARGS, "factory": f"{fresh}:small_cnn"},
                             [{"attention": "eca"}]))
    out = export_bundle(model.spec, model, tmp_path / "b", metadata={})
    plugins.unload(next(p for p in plugins.loaded_plugins() if p.module == "bundle_models"))
    monkeypatch.delenv(plugins.ALLOW_ENV)
    monkeypatch.setattr(plugins, "_CONSENT", [False])
    with pytest.raises(ConfigError, match="--allow-plugins") as e:
        load(out)
    assert e.value.field == "backbone_args.factory"
    assert "bundle_models" not in sys.modules
    monkeypatch.setenv(plugins.ALLOW_ENV, "1")
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(load(out)(x), model.eval()(x))


def test_a_forward_with_python_control_flow_needs_no_tracing():
    loop_cls = plugins.import_ref(f"{MODELS}:LoopingNet", allowed=True)
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(loop_cls())  # what a tracing approach would meet
    model = build_model(spec(LOOP_ARGS, [{"attention": "se", "blocks": [0, 2]}], num_classes=5))
    gates = dict(model.attention_modules())
    assert set(gates) == {"inserted.after:blocks:0:1", "inserted.after:blocks:2:1"}
    ran = []
    for g in gates.values():
        g.register_forward_hook(lambda m, a, o: ran.append(tuple(o.shape)))
    y = model(torch.randn(2, 3, 16, 16))
    assert ran == [(2, 8, 16, 16), (2, 8, 4, 4)]  # the pool ran between them, twice
    y.sum().backward()
    assert all(p.grad is not None for g in gates.values() for p in g.parameters())
    plain = build_model(spec(LOOP_ARGS, num_classes=5))
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith("inserted.")})
    for g in gates.values():  # an SE gate of sigmoid(50) = 1 passes its input through, so
        nn.init.zeros_(g.fc2.weight)  # the network must compute exactly the plain one's
        nn.init.constant_(g.fc2.bias, 50.0)  # function: the gates sit where the spec says
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(model.eval()(x), plain.eval()(x), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# bad input


def test_a_pattern_that_matches_nothing_names_it_and_the_nearest_modules():
    bad = {**R50_ARGS, "positions": {"post_bn": {"after": "layer3.*.bn9"}}}
    with pytest.raises(SpecError) as e:
        canonicalize(spec(bad))
    assert e.value.field == "backbone_args.positions.post_bn.after"
    assert e.value.value == "layer3.*.bn9"
    assert e.value.choices and all(c.startswith("layer3.") and ".bn" in c
                                   for c in e.value.choices)  # difflib's nearest names


@pytest.mark.parametrize(("args", "field", "words"), [
    ({**R50_ARGS, "positions": {"mid": {"after": "layer1.*.relu"}}}, "backbone_args",
     "runs 3 times"),
    ({**R50_ARGS, "replace": "layer1.*.conv1"}, "backbone_args.replace", "3x3 nn.Conv2d"),
    ({**R50_ARGS, "positions": {"post_bn": {"after": "bn1"}}},
     "backbone_args.positions.post_bn.after", "outside every stage"),
    ({**R50_ARGS, "positions": {"post_bn": {"after": "layer1.*.bn*"}}},
     "backbone_args.positions.post_bn.after", "one module per block"),
    ({**R50_ARGS, "factory": f"{MODELS}:not_a_module"}, "backbone_args.factory",
     "not an nn.Module"),
    ({**R50_ARGS, "classifier": "avgpool"}, "backbone_args.classifier", "not an nn.Linear"),
    ({**R50_ARGS, "positions": {"side": {"after": "fc"}}}, "backbone_args.positions.side",
     "unknown position"),
    ({**R50_ARGS, "factory": "no colon"}, "backbone_args.factory", "module:function"),
    ({**R50_ARGS, "kwargs": {"depth": 50}}, "backbone_args.kwargs", "unexpected keyword"),
    ({**R50_ARGS, "stages": "layer*", "blocks": "layer9.*"}, "backbone_args.blocks", "matches no"),
])
def test_bad_factory_arguments_name_the_field(args, field, words):
    with pytest.raises(SpecError) as e:
        canonicalize(spec(args))
    assert e.value.field == field and words in str(e.value)


def test_class_and_channel_counts_must_fit_the_factory_network():
    no_head = {**R50_ARGS, "classifier": None}
    with pytest.raises(SpecError, match="gives 1000 outputs") as e:
        build_model(spec(no_head))
    assert e.value.field == "num_classes" and e.value.choices == [1000]
    with pytest.raises(SpecError) as e:
        build_model({**spec(R50_ARGS), "in_chans": 1})
    assert e.value.field == "in_chans" and e.value.choices == [3]


def test_an_inserted_module_that_changes_the_shape_names_stage_position_and_shapes():
    """The plugins' shape probe (nas_attn.modules) refuses it when the spec is validated."""
    from nas_attn.modules import MODULES, register_module

    @register_module("halving_test_gate", kind="gate")
    class Halving(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :, ::2, ::2]

    try:
        with pytest.raises(ConfigError) as e:
            canonicalize(spec(R50_ARGS, [None, {"attention": "halving_test_gate",
                                                "blocks": [1]}]))
        msg = str(e.value)
        assert e.value.field == "stages[1].attention"
        assert "at post_bn of stage 1 block 1 (512 channels)" in msg
        assert "returns (1, 512, 4, 4) for an input of (1, 512, 8, 8)" in msg
    finally:
        MODULES.unregister("halving_test_gate")


def test_without_consent_the_factory_is_refused_before_it_is_imported(tmp_path, monkeypatch):
    monkeypatch.delenv(plugins.ALLOW_ENV)
    monkeypatch.setattr(plugins, "_CONSENT", [False])
    fresh = tmp_path / "never_imported_models.py"
    shutil.copy(MODELS, fresh)
    with pytest.raises(ConfigError, match="--allow-plugins") as e:
        canonicalize(spec({**CNN_ARGS, "factory": f"{fresh}:small_cnn"}))
    assert e.value.field == "backbone_args.factory"
    assert "never_imported_models" not in sys.modules


# ---------------------------------------------------------------------------------------------
# the command line


def _spec_yaml(args) -> str:
    import yaml

    return yaml.safe_dump(spec(args, [{"attention": "se"}]))


@pytest.mark.slow
@pytest.mark.parametrize(("args", "flags", "field"), [
    (CNN_ARGS, [], "--allow-plugins"),
    ({**CNN_ARGS, "positions": {"post_bn": {"after": "features.*.7"}}}, ["--allow-plugins"],
     "backbone_args.positions.post_bn.after"),
])
def test_cli_bad_factory_exits_2_names_the_field_and_writes_nothing(args, flags, field, tmp_path):
    from cli_helpers import assert_refused

    (tmp_path / "spec.yaml").write_text(_spec_yaml(args))
    env = {k: v for k, v in os.environ.items() if k != plugins.ALLOW_ENV}
    assert_refused(["profile", "spec.yaml", *flags], tmp_path, field, env=env)


@pytest.mark.slow
def test_cli_profiles_a_factory_backbone_with_consent(tmp_path):
    from cli_helpers import run_cli

    (tmp_path / "spec.yaml").write_text(_spec_yaml(CNN_ARGS))
    env = {k: v for k, v in os.environ.items() if k != plugins.ALLOW_ENV}
    res = run_cli(["profile", "spec.yaml", "--allow-plugins"], tmp_path, env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-2000:]
    expected = profile(spec(CNN_ARGS, [{"attention": "se"}]), input_size=(3, 16, 16)).params
    assert f"{expected:,}" in res.stdout


def test_latency_cells_refuse_a_factory_backbone_by_name():
    from nas_attn.cost.cells import cells_with_modules

    with pytest.raises(ConfigError, match="no stem/block/head cells") as e:
        list(cells_with_modules(spec(CNN_ARGS), (3, 16, 16)))
    assert e.value.field == "backbone" and "resnet18" in e.value.choices


def test_the_factory_networks_own_weights_load_by_its_own_names(tmp_path):
    from safetensors.torch import save_file

    small = {**R50_ARGS, "kwargs": {"width": 8, "layers": [1, 2, 1, 1]}}
    resnet50 = plugins.import_ref(f"{MODELS}:resnet50", allowed=True)
    state = resnet50(width=8, layers=(1, 2, 1, 1)).state_dict()  # 1000 classes
    save_file(state, str(tmp_path / "r50.safetensors"))
    s = spec(small, [{"attention": "se"}, {"conv": "rfaconv"}],
             backbone_weights=str(tmp_path / "r50.safetensors"))
    model = build_model(s)
    left = model.pretrained.left_out
    assert sorted(x.split(" ")[0] for x in left) == [
        "fc.bias", "fc.weight", "layer2.0.conv2.weight", "layer2.1.conv2.weight"]
    own = model.state_dict()
    assert torch.equal(own["net.layer3.0.bn3.running_mean"], state["layer3.0.bn3.running_mean"])
    assert len(model.pretrained.loaded) == len(state) - 4
    del state["layer4.0.bn1.bias"]
    save_file(state, str(tmp_path / "r50.safetensors"))
    with pytest.raises(ConfigError, match=r"missing: layer4\.0\.bn1\.bias"):
        build_model(s)


def test_ablation_designs_work_on_a_factory_backbone_and_keep_its_weights(tmp_path):
    from nas_attn.ablation import loo, swap

    base = canonicalize(spec(R50_ARGS, [{"attention": "se"}, {"attention": "eca"},
                                        {"conv": "rfaconv"}], backbone_weights="w.safetensors"))
    d = loo(base)
    assert [a.name for a in d.arms] == ["base", "loo:stage0.attention", "loo:stage1.attention",
                                        "loo:stage2.conv"]
    assert all(a.spec.backbone == "factory" and a.spec.backbone_weights == "w.safetensors"
               for a in d.arms)
    arms = swap(base, ["cbam"]).arms
    assert {a.spec.stages[0].attention.type for a in arms[1:]} == {"cbam"}
    assert profile(arms[1].spec, input_size=(3, 32, 32)).attention_params > 0


def test_fvcores_count_of_the_factory_resnet50_is_the_builtins():
    """fvcore traces with torch.jit: the gates' forward hooks are in its graph too."""
    from nas_attn.cost.fvcore import profile_fvcore

    stages = [{"attention": "se"}, {"conv": "rfaconv"}]
    ours = profile_fvcore(spec(R50_ARGS, stages), (3, 32, 32))
    builtin = profile_fvcore({"backbone": "resnet50", "num_classes": 10, "stages": stages},
                             (3, 32, 32))
    assert (ours.flops, ours.attention_flops) == (builtin.flops, builtin.attention_flops)
    assert ours.attention_flops > 0
