"""Learned switch weights (``mode: learned``, nas_attn/oneshot/learned.py): the mode trains
weights and per-stage logits on separate images, the logits move towards the option that
lowers the held-out loss, the cost counts held-out forwards, the checkpoint keeps the logits,
and bad settings are refused naming the field. Tiny space, a few batches: fast."""

from __future__ import annotations

import json
import random

import pytest
import torch

from nas_attn.data import load_dataset
from nas_attn.errors import ConfigError
from nas_attn.oneshot import (
    LearnedSettings,
    build_supernet,
    load_supernet,
    recipe_of,
    save_supernet,
    train_supernet,
)
from nas_attn.oneshot.learned import ArchUpdater, arch_step_due, sample_path, split_training
from nas_attn.space import parse_space
from nas_attn.train import TrainConfig

SPACE = {"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 1}, "num_classes": 4,
         "input_size": [3, 8, 8],
         "stages": {"default": {"attention": {"none": None, "se": None, "eca": None},
                                "position": ["post_bn"]}}}


@pytest.fixture(scope="module")
def space():
    return parse_space(SPACE, "learned test space")


@pytest.fixture(scope="module")
def data():
    return load_dataset({"name": "synthetic", "image_size": 8, "num_classes": 4,
                         "train_size": 64, "val_size": 16, "test_size": 8})


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 16, "threads": 1, "device": "cpu", **kw})


def test_the_mode_trains_weights_and_logits_and_counts_its_cost(space, data):
    sn = build_supernet(space, seed=0)
    assert all(torch.equal(lg, torch.zeros(3)) for lg in sn.arch_logits())
    before = sn.net.fc.weight.detach().clone()
    res = train_supernet(sn, data, _cfg(epochs=3), "learned", seed=0,
                         learned={"arch_lr": 0.05, "arch_split": 0.25})
    # 64 images: 16 held out (one batch), 48 for the weights (three batches) per epoch
    assert res.path_passes == 3 * 3 and res.arch_passes == 3 * 1
    assert res.steps_per_epoch == 4  # a stand-alone epoch over all 64 images
    assert res.cost_epochs == pytest.approx((9 + 3 / 3) / 4)
    assert sum(res.counts[0]) == 9
    assert not torch.equal(before, sn.net.fc.weight)
    moved = [lg for lg in sn.arch_logits() if lg.abs().max() > 1e-4]
    assert moved, "no stage's logits moved"
    assert not any(lg.requires_grad for lg in sn.arch_logits())
    probs = sn.arch_probabilities()
    assert res.arch_probs == probs
    assert all(sum(p) == pytest.approx(1.0) and len(p) == 3 for p in probs)


def test_reinforce_raises_the_logit_of_the_rewarded_option():
    logits = [torch.zeros(3), torch.zeros(2)]
    up = ArchUpdater(logits, LearnedSettings(arch_lr=0.01, baseline_decay=0.5), fixed=[1])
    rng = random.Random(0)
    for _ in range(200):
        path = sample_path(logits, rng)
        up.step(path, 1.0 if path[0] == 2 else 0.0)  # option 2 of stage 0 lowers the loss
    up.close()
    p0 = torch.softmax(logits[0], 0)
    assert p0.argmax().item() == 2 and p0[2] > 0.5
    assert torch.equal(logits[1], torch.zeros(2))  # a fixed stage is not updated


def test_the_split_and_the_schedule_of_architecture_steps():
    gen = torch.Generator().manual_seed(0)
    w, a = split_training(100, 10, LearnedSettings(arch_split=0.3), gen)
    assert len(a) == 30 and len(w) == 70
    assert sorted(torch.cat([w, a]).tolist()) == list(range(100))  # disjoint, complete
    due = [arch_step_due(b, 7, 3) for b in range(7)]
    assert sum(due) == 3 and due != [True] * 3 + [False] * 4  # spread over the epoch
    assert sum(arch_step_due(b, 18, 6) for b in range(18)) == 6


def test_the_checkpoint_round_trips_the_logits(space, tmp_path):
    sn = build_supernet(space, seed=1)
    with torch.no_grad():
        sn.arch_logits()[0].copy_(torch.tensor([0.5, -1.0, 2.0]))
    recipe = recipe_of(_cfg(), "learned", 1)
    meta_path = save_supernet(sn, tmp_path, recipe)
    recorded = json.loads(meta_path.read_text())["arch_probs"]
    assert recorded[0] == pytest.approx(torch.softmax(torch.tensor([0.5, -1.0, 2.0]), 0).tolist())
    assert recorded[1] == pytest.approx([1 / 3] * 3)  # an untrained stage: uniform
    other = build_supernet(space, seed=1)
    assert torch.equal(other.arch_logits()[0], torch.zeros(3))
    load_supernet(other, tmp_path, recipe)
    assert torch.equal(other.arch_logits()[0], torch.tensor([0.5, -1.0, 2.0]))
    assert other.arch_probabilities() == sn.arch_probabilities()


@pytest.mark.parametrize(("learned", "field", "value"), [
    ({"arch_lr": 0.0}, "learned.arch_lr", 0.0),
    ({"arch_lr": float("nan")}, "learned.arch_lr", None),
    ({"arch_split": 0.95}, "learned.arch_split", 0.95),
    ({"arch_split": 0.1}, "learned.arch_split", 0.1),  # 6 of 64 images: less than a batch
    ({"baseline_decay": 1.0}, "learned.baseline_decay", 1.0),
    ({"arch_rate": 0.1}, "learned.arch_rate", "arch_rate"),
])
def test_bad_settings_are_refused_naming_the_field(space, data, learned, field, value):
    with pytest.raises(ConfigError) as e:
        train_supernet(build_supernet(space), data, _cfg(), "learned", learned=learned)
    assert e.value.field == field
    if value is not None:
        assert e.value.value == value


def test_learned_settings_with_another_mode_are_refused(space, data):
    with pytest.raises(ConfigError, match=r"learned.*need mode 'learned'") as e:
        train_supernet(build_supernet(space), data, _cfg(), "spos", learned={"arch_lr": 0.01})
    assert e.value.field == "learned" and list(e.value.choices) == ["learned"]
