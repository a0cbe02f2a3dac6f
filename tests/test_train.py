"""The training loop: it learns, it is reproducible, the callback can stop it, and bad input
fails with the typed errors the search runner records."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from nas_attn.data import load_dataset
from nas_attn.errors import ConfigError, NonFiniteLossError
from nas_attn.train import EpochResult, TrainConfig, lr_at, train_spec

SMALL_NET = {"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 1}}


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset({"name": "synthetic", "image_size": 8, "train_size": 128,
                         "val_size": 64, "test_size": 32, "signal": 0.5})


@pytest.fixture(scope="module")
def clutter():
    # the quickstart study's data: 16x16 canvas, 2 fragments
    return load_dataset({"name": "cluttered-digits", "image_size": 16, "distractors": 2,
                         "train_size": 2000, "val_size": 400, "test_size": 200})


def _cfg(**kw):
    base = {"epochs": 2, "batch_size": 32, "lr": 0.05, "threads": 2, "device": "cpu"}
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_learns_cluttered_digits_well_above_chance(clutter):
    spec = {**SMALL_NET, "stages": [{"attention": "se"}, None, {"attention": "se"}]}
    seen: list[EpochResult] = []
    r = train_spec(spec, clutter, _cfg(epochs=4, batch_size=32, lr=0.2),
                   seen.append, evaluate_test=True)
    assert [e.epoch for e in seen] == [1, 2, 3, 4] and r.epochs == seen
    assert r.val_accuracy > 0.3, [e.val_accuracy for e in seen]  # chance is 0.10
    assert seen[-1].train_loss < seen[0].train_loss
    assert r.test_accuracy is not None and r.test_accuracy > 0.25
    assert not r.model.training and r.epochs_trained == 4 and not r.stopped_early
    assert all(e.images_per_s > 0 and e.elapsed_s > 0 for e in seen)


def test_fixed_seed_gives_identical_runs(synthetic):
    runs = [train_spec(SMALL_NET, synthetic, _cfg(seed=7)) for _ in range(2)]
    a, b = ([(e.train_loss, e.val_loss, e.val_accuracy) for e in r.epochs] for r in runs)
    assert a == b
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters(), strict=True):
        assert torch.equal(p, q)
    other = train_spec(SMALL_NET, synthetic, _cfg(seed=8))
    assert other.epochs[0].train_loss != runs[0].epochs[0].train_loss


def test_training_leaves_global_rng_and_threads_alone(synthetic):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    train_spec(SMALL_NET, synthetic, _cfg(epochs=1, threads=1, deterministic=True))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_callback_false_stops_training(synthetic):
    calls = []

    def cb(e: EpochResult) -> bool:
        calls.append(e)
        return e.epoch < 2

    r = train_spec(SMALL_NET, synthetic, _cfg(epochs=5), cb)
    assert len(calls) == 2 and r.epochs_trained == 2 and r.stopped_early
    assert r.val_accuracy == calls[-1].val_accuracy
    assert r.best_val_accuracy == max(e.val_accuracy for e in calls)
    assert r.test_accuracy is None  # only when asked


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_from_a_saved_state_equals_training_straight_through(synthetic, tmp_path,
                                                                   optimizer):
    """Stopped after epoch 2 with its state saved, then resumed from the file: the same
    epochs and weights as one uninterrupted run (warm-up and cosine schedule included)."""
    from nas_attn.train_state import load_state, save_state

    spec = {**SMALL_NET, "stages": [{"attention": "se"}, None, None]}
    cfg = _cfg(epochs=4, seed=3, optimizer=optimizer, warmup_epochs=1.0, nesterov=False)
    straight = train_spec(spec, synthetic, cfg)
    path = tmp_path / "state.pt"
    saved: list[int] = []

    def keep(state):
        saved.append(state["epoch"])
        save_state(state, path)

    first = train_spec(spec, synthetic, cfg, lambda e: e.epoch < 2, save_state_at=(1, 2, 4),
                       on_state=keep)
    assert first.stopped_early and saved == [1, 2]  # never after the last epoch
    torch.manual_seed(99)  # the caller's RNG must not matter: the state carries its own
    resumed = train_spec(spec, synthetic, cfg, resume_state=load_state(path))
    key = [(e.epoch, e.train_loss, e.val_loss, e.val_accuracy) for e in straight.epochs]
    assert [(e.epoch, e.train_loss, e.val_loss, e.val_accuracy) for e in resumed.epochs] == key
    assert resumed.epochs_trained == 4 and not resumed.stopped_early
    for p, q in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(p, q)


def test_resume_refuses_another_recipe_or_data_size(synthetic, tmp_path):
    from nas_attn.train_state import load_state, save_state

    states: list[dict] = []
    train_spec(SMALL_NET, synthetic, _cfg(epochs=3), save_state_at=(1,),
               on_state=lambda s: states.append(save_state(s, tmp_path / "s.pt")))
    state = load_state(states[0])
    with pytest.raises(ConfigError, match=r"train\.lr: saved 0\.05, now 0\.1"):
        train_spec(SMALL_NET, synthetic, _cfg(epochs=3, lr=0.1), resume_state=state)
    smaller = load_dataset({"name": "synthetic", "image_size": 8, "train_size": 64,
                            "val_size": 64, "test_size": 32, "signal": 0.5})
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        train_spec(SMALL_NET, smaller, _cfg(epochs=3), resume_state=state)
    # threads and device do not change the trajectory: allowed
    train_spec(SMALL_NET, synthetic, _cfg(epochs=3, threads=1), resume_state=state)
    (tmp_path / "junk.pt").write_bytes(b"not a state")
    with pytest.raises(ConfigError, match="resume_state"):
        load_state(tmp_path / "junk.pt")


def test_nonfinite_loss_raises(synthetic):
    with pytest.raises(NonFiniteLossError) as e:
        train_spec(SMALL_NET, synthetic, _cfg(lr=1e30, epochs=3, weight_decay=0.0))
    assert e.value.reason == "nonfinite"


def test_adamw_label_smoothing_and_grad_clip_run(synthetic):
    r = train_spec(SMALL_NET, synthetic, _cfg(optimizer="adamw", lr=1e-3, label_smoothing=0.1,
                                              grad_clip=1.0, nesterov=False))
    assert all(math.isfinite(e.train_loss) for e in r.epochs)


@pytest.mark.parametrize(("kw", "field"), [
    ({"optimizer": "adam"}, "train.optimizer"),
    ({"epochs": 0}, "train.epochs"),
    ({"lr": -1.0}, "train.lr"),
    ({"lr": float("inf")}, "train.lr"),
    ({"batch_size": 2.5}, "train.batch_size"),
    ({"warmup_epochs": 3, "epochs": 2}, "train.warmup_epochs"),
    ({"label_smoothing": 0.9}, "train.label_smoothing"),
    ({"grad_clip": 0}, "train.grad_clip"),
    ({"device": "tpu"}, "train.device"),
    ({"amp": "fp8"}, "train.amp"),
    ({"threads": 0}, "train.threads"),
    ({"momentum": 0.0}, "train.nesterov"),
])
def test_bad_train_config_names_the_field(kw, field):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kw)
    assert e.value.field == field


def test_mapping_config_is_strict(synthetic):
    with pytest.raises(ConfigError) as e:
        train_spec(SMALL_NET, synthetic, {"epochs": 1, "learning_rate": 0.1})
    assert e.value.field == "train.learning_rate" and "lr" in e.value.choices


def test_cuda_only_settings_and_missing_gpus_are_refused(synthetic):
    with pytest.raises(ConfigError) as e:
        train_spec(SMALL_NET, synthetic, _cfg(amp="bf16"))
    assert e.value.field == "train.amp"
    with pytest.raises(ConfigError) as e:
        train_spec(SMALL_NET, synthetic, _cfg(device="cuda:99"))
    assert e.value.field == "train.device"


def test_spec_must_match_the_data(synthetic):
    with pytest.raises(ConfigError) as e:
        train_spec({**SMALL_NET, "num_classes": 7}, synthetic, _cfg())
    assert e.value.field == "num_classes" and e.value.choices == [10]
    with pytest.raises(ConfigError) as e:
        train_spec({**SMALL_NET, "in_chans": 1}, synthetic, _cfg())
    assert e.value.field == "in_chans"


def test_lr_schedule_warms_up_linearly_then_decays_by_cosine():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[-1] < 0.001
    assert lr_at(0, 50, 0, 0.2) == pytest.approx(0.2)


def test_cli_train_prints_json_metrics(tmp_path, capsys):
    from nas_attn.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text("backbone: tiny\nbackbone_args: {width: 8, blocks: 1}\n"
                    "stages:\n  - attention: se\n")
    code = main(["train", str(spec), "--data", "synthetic", "-D", "image_size=8",
                 "-D", "train_size=64", "-D", "val_size=32", "-D", "test_size=16",
                 "--epochs", "2", "--batch-size", "16", "--seed", "3", "--device", "cpu",
                 "--threads", "1", "--test", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    assert out["epochs_trained"] == 2 and len(out["epochs"]) == 2
    assert 0.0 <= out["val_accuracy"] <= 1.0 and out["test_accuracy"] is not None
    assert out["params"] > 0 and out["train"]["seed"] == 3
    assert "epoch   2/2" in captured.err


def test_cli_train_bad_option_exits_2(tmp_path, capsys):
    from nas_attn.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text("backbone: tiny\n")
    assert main(["train", str(spec), "--data", "synthetic", "-D", "colour=1"]) == 2
    assert "data.colour" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2


def test_a_state_holding_python_objects_is_refused_without_torchs_unsafe_advice(tmp_path):
    import fractions

    import torch

    from nas_attn.train_state import load_state

    torch.save({"format": "nas-attn-train-state", "x": fractions.Fraction(1, 3)},
               tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="refused") as e:
        load_state(tmp_path / "evil.pt")
    assert "weights_only" not in str(e.value)


def test_cli_train_reports_a_bad_spec_before_loading_the_dataset(tmp_path, capsys,
                                                                 monkeypatch):
    import nas_attn.data
    from nas_attn.cli import main

    def never(*a, **k):
        raise AssertionError("the dataset was loaded before the spec was checked")

    monkeypatch.setattr(nas_attn.data, "load_dataset", never)
    spec = tmp_path / "spec.yaml"
    spec.write_text("backbone: tiny\nstages:\n  - attention: no-such-module\n")
    assert main(["train", str(spec), "--data", "synthetic"]) == 2
    assert "no-such-module" in capsys.readouterr().err
