"""Export bundles: write, reload, ONNX agreement, atomicity, refusals, unsafe checkpoints."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nas_attn
from nas_attn.arch import build_model, spec_hash
from nas_attn.errors import ConfigError
from nas_attn.export import export_bundle, load
from nas_attn.export.layout import BUNDLE_FILES
from nas_attn.modules import MODULES
from nas_attn.onnx_export import ExportError, OnnxMismatchError

SPEC = {
    "backbone": "tiny",
    "backbone_args": {"width": 8, "blocks": 1},
    "num_classes": 5,
    "stages": [{"attention": "se"}, {"attention": "eca"},
               {"attention": {"type": "cbam", "rd_ratio": 0.25}}],
}
META = {
    "objectives": {"val_accuracy": 0.875, "flops": 3.4e6},
    "directions": {"val_accuracy": "maximize", "flops": "minimize"},
    "training": {"epochs": 3, "lr": 0.1, "batch_size": 64},
    "dataset": "digits",
    "seed": 7,
    "latency": {"ms": 1.25, "device": "cpu", "batch_size": 1},
    "front": {"pick": "knee", "on_front": True, "front_size": 4},
}


def trained_like(spec=SPEC) -> nn.Module:
    """A built network whose BatchNorm statistics and weights are not the init values."""
    model = build_model(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.train()
        for _ in range(2):
            model(torch.randn(8, 3, 32, 32) * 2 + 0.5)
    return model.eval()


def ort_run(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x.numpy()})[0]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = trained_like()
    out = export_bundle(SPEC, model, tmp_path_factory.mktemp("exp") / "bundle", metadata=META)
    return model, out


# ---------------------------------------------------------------------------------------------
# round trip


def test_bundle_has_every_file_and_nothing_else(exported):
    _, out = exported
    assert listing(out) == sorted(BUNDLE_FILES)
    assert listing(out.parent) == ["bundle"]  # no temporary folder left beside it


def test_pytorch_reloaded_and_onnxruntime_agree(exported):
    model, out = exported
    reloaded = nas_attn.load(out)
    assert not reloaded.training
    x = torch.randn(4, 3, 32, 32)  # a batch size never used at export: the axis is dynamic
    with torch.no_grad():
        ref = model(x)
        again = reloaded(x)
    assert torch.equal(ref, again)
    onnx_out = ort_run(out / "model.onnx", x)
    assert onnx_out.shape == (4, 5)
    np.testing.assert_allclose(onnx_out, ref.numpy(), rtol=1e-4, atol=1e-5)
    for name, t in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], t), name


def test_card_records_what_it_should(exported):
    model, out = exported
    card = json.loads((out / "card.json").read_text())
    assert card["spec_hash"] == spec_hash(SPEC)
    assert card["spec"] == json.loads((out / "spec.json").read_text())
    assert nas_attn.load_spec(out / "spec.yaml").to_dict() == card["spec"]
    assert card["num_params"] == sum(p.numel() for p in model.parameters())
    cost = nas_attn.profile(SPEC)
    assert card["cost"]["params"] == cost.params
    assert card["cost"]["flops"] == cost.flops
    assert card["cost"]["attention_flops"] == cost.attention_flops > 0
    assert card["objectives"] == META["objectives"]
    assert card["seed"] == 7
    assert card["latency"] == META["latency"]
    assert card["front"] == META["front"]
    assert card["training"] == META["training"]
    onnx = card["onnx"]
    assert onnx["opset"] >= 17
    assert 0 <= onnx["max_abs_diff"] <= onnx["atol"] + onnx["rtol"] * onnx["max_abs_output"]
    for pkg in ("torch", "onnx", "onnxruntime", "nas_attn", "safetensors"):
        assert card["software"][pkg]
    assert card["software"]["nas_attn"] == nas_attn.__version__
    assert set(card["files"]) == {"spec.yaml", "spec.json", "weights.safetensors",
                                  "model.onnx", "LOADING.md"}
    md = (out / "MODEL_CARD.md").read_text()
    assert card["spec_hash"] in md
    assert f"{cost.flops:,}" in md
    assert "knee" in md and "onnxruntime" in md
    assert 'nas_attn.load("bundle")' in (out / "LOADING.md").read_text()


def test_export_from_state_dict_writes_the_same_weights(exported, tmp_path):
    model, out = exported
    again = export_bundle(SPEC, model.state_dict(), tmp_path / "b", metadata={})
    a = json.loads((out / "card.json").read_text())["files"]["weights.safetensors"]
    b = json.loads((again / "card.json").read_text())["files"]["weights.safetensors"]
    assert a == b
    # a bundle written in a staging folder names the folder it will be moved to
    staged = export_bundle(SPEC, model.state_dict(), tmp_path / "b0", metadata={},
                           name="trial-3")
    loading = (staged / "LOADING.md").read_text()
    assert 'nas_attn.load("trial-3")' in loading and '"b0' not in loading


def test_load_is_lazy_and_exported_from_the_package():
    from nas_attn.export.loader import load as loader_load

    assert nas_attn.load is loader_load is load


# ---------------------------------------------------------------------------------------------
# refusals and atomicity


def test_existing_path_refused_without_force_and_replaced_with_force(exported, tmp_path):
    model, _ = exported
    target = tmp_path / "b"
    first = export_bundle(SPEC, model, target, metadata={"seed": 1})
    before = (first / "weights.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        export_bundle(SPEC, model, target, metadata={"seed": 2})
    assert (first / "weights.safetensors").read_bytes() == before
    assert json.loads((first / "card.json").read_text())["seed"] == 1

    other = trained_like()
    export_bundle(SPEC, other, target, metadata={"seed": 2}, force=True)
    assert json.loads((target / "card.json").read_text())["seed"] == 2
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load(target)(x), other(x))
    assert listing(tmp_path) == ["b"]


def test_force_never_replaces_a_folder_that_is_not_a_bundle(exported, tmp_path):
    model, _ = exported
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="not a nas-attn bundle"):
        export_bundle(SPEC, model, target, metadata={}, force=True)
    assert (target / "thesis.tex").read_text() == "years of work"
    assert listing(tmp_path) == ["precious"]


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/tmp/elsewhere-nas-attn-test", "."])
def test_output_escaping_the_base_folder_is_refused(exported, tmp_path, bad):
    model, _ = exported
    base = tmp_path / "exports"
    base.mkdir()
    with pytest.raises(ConfigError, match="out_dir"):
        export_bundle(SPEC, model, bad, metadata={}, base_dir=base)
    assert listing(base) == []
    assert listing(tmp_path) == ["exports"]
    assert not Path("/tmp/elsewhere-nas-attn-test").exists()


def test_symlink_out_of_the_base_folder_is_refused(exported, tmp_path):
    model, _ = exported
    base, outside = tmp_path / "exports", tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    (base / "link").symlink_to(outside)
    with pytest.raises(ConfigError, match="escapes"):
        export_bundle(SPEC, model, "link/b", metadata={}, base_dir=base)
    assert listing(outside) == []


def test_relative_path_inside_the_base_folder_is_accepted(exported, tmp_path):
    model, _ = exported
    out = export_bundle(SPEC, model, "runs/../b", metadata={}, base_dir=tmp_path)
    assert out == (tmp_path / "b").resolve()
    assert (out / "model.onnx").exists()


def test_injected_failure_leaves_nothing(exported, tmp_path, monkeypatch):
    from nas_attn import onnx_export as onnx_mod

    def fail(*args, **kwargs):
        raise OnnxMismatchError(1.0, 1e-4, 3)

    model, _ = exported
    monkeypatch.setattr(onnx_mod, "check_onnx", fail)
    with pytest.raises(OnnxMismatchError, match="differs from PyTorch"):
        export_bundle(SPEC, model, tmp_path / "b", metadata={})
    assert listing(tmp_path) == []


def test_real_onnx_mismatch_fails_and_an_old_bundle_survives(exported, tmp_path, monkeypatch):
    """SE made to compute something else while being traced for ONNX: the real onnxruntime
    check must catch it, and the previous bundle at the path must be left untouched."""
    from nas_attn.modules.se import SqueezeExcite

    model, _ = exported
    target = export_bundle(SPEC, model, tmp_path / "b", metadata={"seed": 1})
    before = {n: (target / n).read_bytes() for n in BUNDLE_FILES}
    honest = SqueezeExcite.forward

    def liar(self, x):
        y = honest(self, x)
        return y * 1.5 if torch.onnx.is_in_onnx_export() else y

    monkeypatch.setattr(SqueezeExcite, "forward", liar)
    with pytest.raises(OnnxMismatchError, match="differs from PyTorch"):
        export_bundle(SPEC, model, target, metadata={"seed": 2}, force=True)
    assert listing(tmp_path) == ["b"]
    assert {n: (target / n).read_bytes() for n in BUNDLE_FILES} == before


def test_module_without_onnx_translation_fails_clearly(tmp_path):
    """CRA's adaptive pooling to 7x7 has no ONNX translation on 32/16/8-pixel maps (torch's
    exporter supports only output sizes that divide the input)."""
    spec = {"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 1},
            "stages": [{"attention": "cra"}]}
    with pytest.raises(ExportError, match="adaptive_avg_pool2d"):
        export_bundle(spec, build_model(spec), tmp_path / "b", metadata={})
    assert listing(tmp_path) == []


def test_weights_of_another_network_are_refused(tmp_path):
    plain = build_model({"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 1}})
    with pytest.raises(ConfigError, match=r"weights.*missing.*attn") as e:
        export_bundle(SPEC, plain.state_dict(), tmp_path / "b", metadata={})
    assert e.value.field == "weights"
    with pytest.raises(ConfigError, match="another spec"):
        export_bundle(SPEC, plain, tmp_path / "b", metadata={})
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("meta", "field"),
    [({"sede": 1}, "metadata.sede"), ({"seed": "7"}, "metadata.seed"),
     ({"objectives": {"acc": float("nan")}}, "metadata.objectives.acc"),
     ({"training": {"opt": object()}}, "metadata.training"),
     ({"directions": {"acc": "up"}}, "metadata.directions.acc")],
)
def test_bad_metadata_is_refused_before_anything_is_written(tmp_path, meta, field):
    with pytest.raises(ConfigError) as e:
        export_bundle(SPEC, build_model(SPEC), tmp_path / "b", metadata=meta)
    assert e.value.field == field
    assert listing(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# loading: incomplete bundles, changed files, legacy and malicious checkpoints


def copy_bundle(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_files_are_named(exported, tmp_path):
    _, out = exported
    b = copy_bundle(out, tmp_path / "b")
    (b / "weights.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"missing weights\.safetensors"):
        load(b)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"missing spec\.json.*weights\.safetensors"):
        load(tmp_path / "empty")
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "nowhere")


def test_changed_weights_are_caught_by_the_card_checksum(exported, tmp_path):
    _, out = exported
    b = copy_bundle(out, tmp_path / "b")
    raw = bytearray((b / "weights.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (b / "weights.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match=r"weights\.safetensors.*SHA-256"):
        load(b)


def test_weights_that_do_not_fit_the_spec_are_named(exported, tmp_path):
    from safetensors.torch import save_file

    _, out = exported
    b = copy_bundle(out, tmp_path / "b")
    (b / "card.json").unlink()  # no checksums: the structural check must catch it
    plain = build_model({"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 1}})
    save_file({k: v.contiguous() for k, v in plain.state_dict().items()},
              str(b / "weights.safetensors"))
    with pytest.raises(ConfigError, match=r"weights\.safetensors.*missing: layer1") as e:
        load(b)
    assert e.value.field.endswith("weights.safetensors")

    state = {k: v.clone() for k, v in build_model(SPEC).state_dict().items()}
    state["fc.weight"] = torch.zeros(7, 32)
    save_file(state, str(b / "weights.safetensors"))
    with pytest.raises(ConfigError, match=r"shape of fc\.weight \[7, 32\]"):
        load(b)
    (b / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="not a readable safetensors"):
        load(b)


def test_spec_yaml_and_json_must_agree(exported, tmp_path):
    _, out = exported
    b = copy_bundle(out, tmp_path / "b")
    (b / "card.json").unlink()
    text = (b / "spec.yaml").read_text()
    (b / "spec.yaml").write_text(text.replace("rd_ratio: 0.0625", "rd_ratio: 0.125"))
    with pytest.raises(ConfigError, match=r"spec\.yaml.*another network"):
        load(b)


def test_legacy_state_dict_checkpoint_loads(exported, tmp_path):
    model, out = exported
    pt = tmp_path / "model.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, pt)
    with pytest.raises(ConfigError, match="spec"):
        load(pt)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load(pt, spec=SPEC)(x), model(x))
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "spec.yaml").write_text((out / "spec.yaml").read_text())
    torch.save(model.state_dict(), legacy / "weights.pt")
    with torch.no_grad():
        assert torch.equal(load(legacy)(x), model(x))


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: code execution from a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_checkpoint_is_refused_without_running(exported, tmp_path):
    model, _ = exported
    # the payload is live: plain unpickling runs it
    proof = tmp_path / "proof-it-runs"
    pickle.loads(pickle.dumps(_Payload(proof)))
    assert proof.exists()

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({**model.state_dict(), "x": _Payload(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(ConfigError, match=r"refused.*could run code") as e:
        load(evil, spec=SPEC)
    assert not marker.exists()
    assert str(evil) in e.value.field

    folder = tmp_path / "bundle-with-evil-weights"
    folder.mkdir()
    (folder / "spec.json").write_text(build_model(SPEC).spec.to_json())
    os.replace(evil, folder / "weights.pt")
    with pytest.raises(ConfigError, match="refused"):
        load(folder)
    assert not marker.exists()


def test_shared_tensors_round_trip(tmp_path):
    from nas_attn.weights import apply_state, read_safetensors, save_weights

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.b.weight = self.a.weight

    src = Tied()
    save_weights(src, tmp_path / "w.safetensors")
    state = read_safetensors(tmp_path / "w.safetensors")
    assert len(state) == 3  # one name for the shared weight
    dst = Tied()
    apply_state(dst, state, "w.safetensors")
    assert dst.b.weight is dst.a.weight
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_bad_device_is_a_config_error(exported):
    _, out = exported
    with pytest.raises(ConfigError, match="device"):
        load(out, device="warp-drive")


# ---------------------------------------------------------------------------------------------
# every registered module exports and agrees with onnxruntime

# hyperparameters for 32x32 inputs: CRA's 7x7 pooling has no ONNX translation on 32/16/8-pixel
# maps (see test_module_without_onnx_translation_fails_clearly); 4 divides them all.
_EXPORT_HP = {"cra": {"pool_size": 4}}


def _spec_with(name: str) -> dict:
    entry = MODULES.get(name)
    choice = {"type": name, **_EXPORT_HP.get(name, {})}
    key = {"gate": "attention", "conv": "conv", "fusion": "fusion"}[entry.kind]
    blocks = 2 if entry.kind == "fusion" else 1
    return {"backbone": "tiny", "backbone_args": {"width": 16, "blocks": blocks},
            "num_classes": 3, "stages": [{key: choice}] * 3}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_registered_module_exports_to_onnx(name, tmp_path):
    spec = _spec_with(name)
    model = trained_like(spec)
    out = export_bundle(spec, model, tmp_path / name, metadata={})
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(ort_run(out / "model.onnx", x), ref, rtol=1e-3, atol=1e-4)
    card = json.loads((out / "card.json").read_text())
    assert card["onnx"]["max_abs_diff"] <= 1e-4 + 1e-3 * card["onnx"]["max_abs_output"]


# ---------------------------------------------------------------------------------------------
# picks over a trials table


def trials_table():
    import pandas as pd

    nan = float("nan")
    rows = [  # number, state, val_accuracy, flops
        (0, "COMPLETE", 0.70, 1e6),
        (1, "COMPLETE", 0.80, 2e6),
        (2, "COMPLETE", 0.90, 8e6),
        (3, "COMPLETE", 0.75, 5e6),   # dominated by 1
        (4, "PRUNED", 0.95, 0.5e6),   # would dominate everything: must never count
        (5, "FAIL", nan, nan),
        (6, "COMPLETE", 0.92, 20e6),
        (7, "COMPLETE", 0.90, 8e6),   # duplicate of 2: both on the front
    ]
    return pd.DataFrame([
        {"number": n, "state": s, "val_accuracy": a, "flops": f, "params": 1000 + n,
         "spec_hash": f"h{n}", "spec": json.dumps({"backbone": "tiny", "num_classes": n + 2})}
        for n, s, a, f in rows
    ])


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [("knee", "knee", None), ("Max-Accuracy", "max-accuracy", None), ("front", "front", None),
     ("flops<=40M", "flops", 4e7), ("FLOPS <= 1.5g", "flops", 1.5e9), ("flops<=4e7", "flops", 4e7),
     ("flops<=1000", "flops", 1000.0), ("trial=12", "trial", 12), ("min-flops", "min-flops", None)],
)
def test_parse_pick(text, kind, value):
    from nas_attn.export.picks import parse_pick

    p = parse_pick(text)
    assert (p.kind, p.value) == (kind, value)


@pytest.mark.parametrize("bad", ["best", "flops<40M", "flops<=", "trial=x", "trial=-1", ""])
def test_parse_pick_rejects_with_the_valid_forms(bad):
    from nas_attn.export.picks import PICKS, parse_pick

    with pytest.raises(ConfigError) as e:
        parse_pick(bad)
    assert e.value.choices == list(PICKS)


def test_front_holds_only_complete_non_dominated_trials():
    from nas_attn.export.picks import pareto_front

    assert list(pareto_front(trials_table())["number"]) == [0, 1, 2, 7, 6]


@pytest.mark.parametrize(
    ("picks", "numbers"),
    [(["max-accuracy"], [6]), (["min-flops"], [0]), (["flops<=5M"], [1]),
     (["flops<=8M"], [2]), (["trial=3"], [3]), (["front"], [0, 1, 2, 7, 6]),
     (["knee"], [2]), (["knee", "max-accuracy", "knee", "trial=2"], [2, 6])],
)
def test_select(picks, numbers):
    from nas_attn.export.picks import select

    chosen = select(trials_table(), picks)
    assert [s.number for s in chosen] == numbers
    for s in chosen:
        assert s.spec == {"backbone": "tiny", "num_classes": s.number + 2}
        assert s.row["spec_hash"] == f"h{s.number}"


def test_knee_agrees_with_pareto_knee_point():
    from nas_attn.export.picks import pareto_front, select
    from nas_attn.pareto import knee_point

    front = pareto_front(trials_table())
    i = knee_point(front[["val_accuracy", "flops"]].to_numpy(), ["maximize", "minimize"])
    assert select(trials_table(), ["knee"])[0].number == int(front["number"].iloc[i])


def test_selection_records_where_it_sits_on_the_front():
    from nas_attn.export.card import validate_metadata
    from nas_attn.export.picks import select

    on, off = select(trials_table(), ["knee", "trial=3"])
    assert on.front["on_front"] is True
    assert on.front["front_index"] == 2
    assert on.front["front_size"] == 5
    assert on.front["complete_trials"] == 6
    assert on.front["pick"] == "knee"
    assert off.front["on_front"] is False
    assert off.front["front_index"] is None
    assert validate_metadata({"front": off.front})["front"] == off.front  # JSON-ready
    assert json.loads(json.dumps(on.row))["val_accuracy"] == 0.9


@pytest.mark.parametrize(
    ("pick", "message"),
    [("trial=4", "is PRUNED"), ("trial=5", "is FAIL"), ("trial=99", "no trial number 99"),
     ("flops<=0.9M", "cheapest has 1,000,000")],
)
def test_picks_that_select_nothing_are_explained(pick, message):
    from nas_attn.export.picks import select

    with pytest.raises(ConfigError, match=message) as e:
        select(trials_table(), [pick])
    assert e.value.field == "pick"


def test_a_pruned_trial_pick_lists_every_complete_trial_as_valid():
    """Any COMPLETE trial is accepted by ``trial=N``, so all of them are the valid choices,
    not only the front (trial 3 is COMPLETE and off the front)."""
    from nas_attn.export.picks import complete_trials, select

    with pytest.raises(ConfigError, match="is PRUNED") as e:
        select(trials_table(), ["trial=4"])
    done = sorted(int(n) for n in complete_trials(trials_table())["number"])
    assert "trial=3" in e.value.choices
    assert e.value.choices == [f"trial={n}" for n in done]
    assert select(trials_table(), ["trial=3"])[0].number == 3


def test_picks_on_a_table_without_complete_trials_or_columns():
    from nas_attn.export.picks import select

    df = trials_table()
    df["state"] = "PRUNED"
    with pytest.raises(ConfigError, match="no COMPLETE trial"):
        select(df, ["knee"])
    with pytest.raises(ConfigError, match="no spec column"):
        select(trials_table().drop(columns=["spec"]), ["knee"])
    with pytest.raises(ConfigError, match="lacks column"):
        select(trials_table().drop(columns=["flops"]), ["knee"])


def test_spec_json_column_and_other_objectives():
    from nas_attn.export.picks import select

    df = trials_table().rename(columns={"spec": "spec_json", "flops": "latency_ms"})
    objectives = [("val_accuracy", "maximize"), ("latency_ms", "minimize")]
    assert [s.number for s in select(df, ["front"], objectives)] == [0, 1, 2, 7, 6]
    assert select(df, ["trial=1"], objectives)[0].spec["num_classes"] == 3
