"""The weight-sharing supernet (nas_attn/oneshot): a path computes what the stand-alone network
computes with the same weights; FairNAS trains every option of a stage once per step;
BatchNorm recalibration re-estimates the statistics; what a supernet cannot hold, and a
checkpoint of another space or recipe, are refused naming the stage, the choice or the
difference. Small spaces and tiny data: fast."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from nas_attn.data import load_dataset
from nas_attn.errors import ConfigError
from nas_attn.oneshot import (
    all_paths,
    build_supernet,
    calibration_batches,
    fair_paths,
    load_supernet,
    recalibrate_bn,
    recipe_of,
    save_supernet,
    score,
    train_supernet,
    uniform_path,
)
from nas_attn.space import parse_space
from nas_attn.train import TrainConfig

BASE = {"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 2}, "num_classes": 4,
        "input_size": [3, 8, 8]}
# gates with hyperparameter values, two positions, block selections, conv choices
SPACE = {
    **BASE,
    "stages": {
        "default": {
            "attention": {"none": None, "se": {"rd_ratio": [0.25, 0.5]}, "eca": None},
            "position": ["post_bn", "pre", "post_add"],
            "blocks": ["all", "last"],
            "conv": ["standard", "rfaconv"],
        },
        "2": {"attention": {"none": None, "cbam": None}, "position": ["identity"],
              "blocks": ["all"], "conv": ["standard"]},
    },
}


@pytest.fixture(scope="module")
def space():
    return parse_space(SPACE, "test space")


@pytest.fixture(scope="module")
def data():
    return load_dataset({"name": "synthetic", "image_size": 8, "num_classes": 4,
                         "train_size": 64, "val_size": 32, "test_size": 8})


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 16, "threads": 1, "device": "cpu", **kw})


def test_options_cover_the_space(space):
    sn = build_supernet(space)
    # stages 0-1: 1 + (2 + 1) * 3 positions * 2 selections = 19 gate choices, x 2 convs
    assert [len(o) for o in sn.options] == [38, 38, 2]
    assert sn.num_paths() == 38 * 38 * 2
    specs = {sn.path_spec(p).hash for p in all_paths(sn)}
    assert len(specs) == sn.num_paths()  # every path a different network


def test_path_forward_equals_standalone(space):
    sn = build_supernet(space, seed=3)
    for m in sn.modules():  # non-trivial BN statistics, so eval mode reads them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    sn.eval()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    rng = random.Random(0)
    paths = [tuple(rng.randrange(len(o)) for o in sn.options) for _ in range(12)]
    paths.append((0, 0, 0))
    for path in paths:
        spec = sn.path_spec(path)
        sn.activate(spec)
        got = sn(x)
        ref = sn.standalone(spec).eval()(x)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)


def test_paths_share_weights(space):
    sn = build_supernet(space)
    a = sn.path_state_dict(sn.path_spec((0, 0, 0)))
    b = sn.path_state_dict(sn.path_spec((5, 7, 1)))
    shared = set(a) & set(b)
    assert "conv1.weight" in shared and "fc.weight" in shared
    assert all(a[k].data_ptr() == b[k].data_ptr() for k in shared)


def test_fair_paths_cover_every_option_once_per_step():
    rng = random.Random(1)
    paths = fair_paths([7, 7, 7], rng)
    assert len(paths) == 7
    for s in range(3):
        assert sorted(p[s] for p in paths) == list(range(7))
    paths = fair_paths([8, 8, 4], rng)
    assert len(paths) == 8
    assert Counter(p[2] for p in paths) == {i: 2 for i in range(4)}
    paths = fair_paths([5, 2], rng)
    counts = Counter(p[1] for p in paths)
    assert sorted(counts.values()) == [2, 3]


def test_uniform_path_is_uniform_per_stage():
    rng = random.Random(0)
    draws = [uniform_path([3, 4], rng) for _ in range(4000)]
    counts = Counter(d[1] for d in draws)
    assert set(counts) == {0, 1, 2, 3}
    assert all(abs(c / 4000 - 0.25) < 0.03 for c in counts.values())


def test_fairnas_training_counts(space, data):
    sn = build_supernet(space)
    res = train_supernet(sn, data, _cfg(), "fairnas", seed=0)
    steps = 64 // 16
    assert res.path_passes == steps * 38
    assert res.counts[0] == [steps] * 38 and res.counts[1] == [steps] * 38
    assert res.counts[2] == [steps * 19] * 2
    assert res.cost_epochs == pytest.approx(38)


def test_spos_training_changes_weights_and_counts(space, data):
    sn = build_supernet(space)
    before = sn.net.fc.weight.detach().clone()
    res = train_supernet(sn, data, _cfg(epochs=2), "spos", seed=0)
    assert res.path_passes == 2 * 4 and res.cost_epochs == pytest.approx(2)
    assert sum(res.counts[0]) == 8
    assert not torch.equal(before, sn.net.fc.weight)
    assert all(torch.isfinite(torch.tensor(e.train_loss)) for e in res.epochs)


def test_unknown_mode_is_refused(space, data):
    with pytest.raises(ConfigError, match=r"oneshot\.mode"):
        train_supernet(build_supernet(space), data, _cfg(), "darts")


def test_bn_recalibration_sets_the_batch_statistics(space, data):
    sn = build_supernet(space)
    sn.activate_path((0, 0, 0))
    bn = sn.net.bn1
    bn.running_mean.fill_(3.0)
    calib = calibration_batches(data, 1, 32)
    recalibrate_bn(sn, calib)
    with torch.no_grad():
        stem = sn.net.conv1(calib[0])
    torch.testing.assert_close(bn.running_mean, stem.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1 and not sn.training
    s1 = score(sn, (1, 2, 0), data, calib)
    assert 0.0 <= s1.val_accuracy <= 1.0 and s1.ms > 0


@pytest.mark.parametrize(("stages", "field"), [
    ({"default": {"fusion": ["none", "sda"]}}, r"stages\[0\]\.fusion.*'sda'"),
    ({"default": {"attention": {"none": None, "se": {"rd_ratio": {"low": 0.1, "high": 0.5}}}}},
     r"stages\[0\]\.attention\.se\.rd_ratio"),
])
def test_what_a_supernet_cannot_hold_is_refused(stages, field):
    sp = parse_space({**BASE, "stages": stages}, "bad")
    with pytest.raises(ConfigError, match=field):
        build_supernet(sp)


def test_several_backbones_and_tied_stages_are_refused():
    sp = parse_space({**BASE, "backbone": ["tiny", "resnet20"], "backbone_args": {}}, "two")
    with pytest.raises(ConfigError, match=r"space\.backbone"):
        build_supernet(sp)
    sp = parse_space({**BASE, "tie_stages": True,
                      "stages": {"default": {"attention": {"none": None, "se": None}}}}, "tied")
    with pytest.raises(ConfigError, match=r"space\.tie_stages"):
        build_supernet(sp)


def test_a_spec_outside_the_supernet_is_refused(space):
    sn = build_supernet(space)
    spec = {**sn.path_spec((0, 0, 0)).to_dict()}
    spec["stages"][0] = {"attention": {"type": "cbam"}, "position": "post_bn"}
    with pytest.raises(ConfigError, match=r"stages\[0\]\.attention.*not a candidate"):
        sn.activate(spec)
    spec["stages"][0] = {"attention": {"type": "se", "rd_ratio": 0.25}, "position": "mid"}
    with pytest.raises(ConfigError, match=r"stages\[0\]\.position.*'mid'"):
        sn.activate(spec)


def test_checkpoint_round_trip_and_refusals(space, tmp_path):
    sn = build_supernet(space, seed=1)
    cfg = _cfg()
    recipe = recipe_of(cfg, "spos", 0)
    save_supernet(sn, tmp_path, recipe, {"epochs_done": 1})
    other = build_supernet(space, seed=2)
    assert not torch.equal(other.net.conv1.weight, sn.net.conv1.weight)
    meta = load_supernet(other, tmp_path, recipe)
    assert meta["epochs_done"] == 1
    assert torch.equal(other.net.conv1.weight, sn.net.conv1.weight)
    with pytest.raises(ConfigError, match=r"checkpoint.recipe.lr.*0\.05.*0\.1"):
        load_supernet(other, tmp_path, recipe_of(_cfg(lr=0.1), "spos", 0))
    with pytest.raises(ConfigError, match=r"checkpoint.recipe.mode.*'spos'.*'fairnas'"):
        load_supernet(other, tmp_path, recipe_of(cfg, "fairnas", 0))
    smaller = parse_space({**SPACE, "stages": {"default": {"attention": {"none": None}}}}, "s")
    with pytest.raises(ConfigError, match=r"checkpoint\.space_hash"):
        load_supernet(build_supernet(smaller), tmp_path, recipe)
    with pytest.raises(ConfigError, match=r"no supernet\.json"):
        load_supernet(other, tmp_path / "missing", recipe)


def test_a_fixed_stage_trains_only_its_option(space, data):
    sn = build_supernet(space)
    res = train_supernet(sn, data, _cfg(), "fairnas", seed=0, fixed={0: 5})
    assert res.counts[0][5] == res.path_passes and sum(res.counts[0]) == res.path_passes
    assert res.counts[1] == [4] * 38  # the other stages still trained fairly
    with pytest.raises(ConfigError, match=r"oneshot\.fixed\[0\]"):
        train_supernet(sn, data, _cfg(), "spos", fixed={0: 38})


class _Killed(Exception):
    pass


@pytest.mark.parametrize("mode", ["spos", "learned"])
def test_an_interrupted_training_resumes_at_its_next_epoch_with_the_same_weights(
        space, data, tmp_path, mode):
    """Interrupted after epoch 1 of 2 (its progress kept, then killed), resumed from the file:
    starts at epoch 2 and ends with exactly the weights, counts and cost of an uninterrupted
    run (``learned``: its logits too, a state-dict buffer, with their Adam state and baseline
    kept in the progress); progress of another space or recipe is refused naming the
    difference."""
    from nas_attn.oneshot.checkpoint import PROGRESS, load_progress, save_progress

    cfg = _cfg(epochs=2, seed=3)  # fairnas: the same state, 38 paths a step
    rec = recipe_of(cfg, mode, 3)
    whole = build_supernet(space, seed=3)
    full = train_supernet(whole, data, cfg, mode)

    def kill_after_first(ep):
        if ep.epoch == 1:
            raise _Killed

    first = build_supernet(space, seed=3)
    with pytest.raises(_Killed):
        train_supernet(first, data, cfg, mode, callback=kill_after_first,
                       on_state=lambda st: save_progress(tmp_path, st, first.space_hash, rec))
    assert (tmp_path / PROGRESS).is_file()
    again = build_supernet(space, seed=3)
    state = load_progress(tmp_path, again, rec)
    assert state["epoch"] == 1
    seen: list[int] = []
    res = train_supernet(again, data, cfg, mode, resume=state,
                         callback=lambda ep: seen.append(ep.epoch))
    assert seen == [2] and [e.epoch for e in res.epochs] == [1, 2]
    assert res.counts == full.counts and res.path_passes == full.path_passes
    assert res.arch_passes == full.arch_passes and (mode == "spos") == (res.arch_passes == 0)
    a, b = whole.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(ConfigError) as e:
        load_progress(tmp_path, again, {**rec, "lr": 0.5})
    assert e.value.field == "checkpoint.recipe.lr" and e.value.value == rec["lr"]
    other = build_supernet(parse_space({**SPACE, "stages": {"default": SPACE["stages"]["2"]}}))
    with pytest.raises(ConfigError) as e:
        load_progress(tmp_path, other, rec)
    assert e.value.field == "checkpoint.space_hash" and e.value.value == space.hash
