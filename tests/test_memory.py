"""The peak-memory estimate of a training step (meta-device pass) against measured peaks, and
the GPU share it turns into; the memory guard of packed GPU trials."""

from __future__ import annotations

import pytest
import torch

from nas_attn.cost.memory import (
    CUDA_CONTEXT_BYTES,
    LiveBytes,
    estimate_memory,
    gpu_share,
    measure_peak,
    train_memory,
)

TINY_SE = {"backbone": "tiny", "num_classes": 10, "in_chans": 3,
           "stages": [None, {"attention": {"type": "eca"}, "position": "post_bn"},
                      {"attention": {"type": "se", "rd_ratio": 0.25}, "position": "post_add",
                       "blocks": "last"}]}
TINY_CBAM = {"backbone": "tiny", "num_classes": 10, "in_chans": 3,
             "stages": [{"attention": {"type": "cbam"}}, None, None]}
R18_SE = {"backbone": "resnet18_cifar", "num_classes": 10,
          "stages": [{"attention": {"type": "se"}, "position": "post_bn"}] * 4}
GiB = 2**30


def _sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)


def _measured(spec, batch, size=32):
    from nas_attn.arch import build_model, load_spec

    torch.manual_seed(0)
    model = build_model(load_spec(spec))
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 10, (batch,))
    return measure_peak(model, x, y, _sgd)


# Tolerance: the estimate is an upper bound of the tensors a step holds. Measured on CPU (tensor
# storages alive after every op) it is 1.02-1.10x the measured peak for these nets; it may not
# fall below it, nor exceed it by more than 25 %.
@pytest.mark.parametrize(("spec", "batch"), [(TINY_SE, 16), (TINY_SE, 4), (TINY_CBAM, 8)])
def test_estimate_bounds_the_measured_peak_of_small_nets(spec, batch):
    est = estimate_memory(spec, (3, 32, 32), batch).total
    peak = _measured(spec, batch)
    assert peak <= est <= 1.25 * peak, (est, peak)


@pytest.mark.slow
def test_estimate_bounds_the_measured_peak_of_resnet18_cifar():
    torch.set_num_threads(2)
    est = estimate_memory(R18_SE, (3, 32, 32), 8).total
    peak = _measured(R18_SE, 8)
    assert peak <= est <= 1.25 * peak, (est, peak)


def test_estimate_parts_scale_as_they_should():
    a = estimate_memory(TINY_SE, (3, 32, 32), 8)
    b = estimate_memory(TINY_SE, (3, 32, 32), 16)
    assert a == estimate_memory(TINY_SE, (3, 32, 32), 8)  # pure
    assert (a.params, a.grads, a.optimizer) == (b.params, b.grads, b.optimizer)
    c = estimate_memory(TINY_SE, (3, 32, 32), 24)
    # affine in the batch: per-image activations plus per-channel ones (BatchNorm statistics)
    assert c.activations - b.activations == b.activations - a.activations
    assert 0 <= 2 * a.activations - b.activations < 0.01 * a.activations
    assert b.batch == 2 * a.batch
    n = sum(p.numel() for p in __import__("nas_attn").build_model(TINY_SE).parameters())
    assert a.grads == 4 * n and a.optimizer == 4 * n  # fp32 grads, one momentum buffer
    adam = estimate_memory(TINY_SE, (3, 32, 32), 8, optimizer="adamw")
    plain = estimate_memory(TINY_SE, (3, 32, 32), 8, momentum=0)
    assert adam.optimizer == 2 * a.optimizer and plain.optimizer == 0
    half = estimate_memory(TINY_SE, (3, 32, 32), 8, amp="bf16")
    assert half.activations == a.activations // 2
    assert train_memory(TINY_SE, (3, 32, 32), {"batch_size": 8}, data_bytes=10) == \
        estimate_memory(TINY_SE, (3, 32, 32), 8, data_bytes=10)
    assert a.to_dict()["total"] == a.total


def test_live_bytes_counts_new_storages_until_freed():
    keep = torch.zeros(10)
    with LiveBytes([keep]) as live:
        a = torch.ones(1000)  # 4,000 bytes
        keep.add_(1)  # in place on a tensor that was there: nothing new
        b = a * 2
        del a, b
        torch.zeros(1)  # an op after the frees
    assert live.peak == 8000 and live.current == 4


@pytest.mark.parametrize(("peak", "share", "mem", "want"), [
    (1 * GiB, 0.25, 80 * GiB, 0.25),  # fits its quarter
    (25 * GiB, 0.25, 80 * GiB, 0.5),  # needs two quarters: two neighbours, not three
    (50 * GiB, 0.25, 80 * GiB, 0.75),
    (70 * GiB, 0.25, 80 * GiB, 1.0),  # alone on the GPU
    (80 * GiB, 0.25, 80 * GiB, None),  # plus its CUDA context, more than a GPU: refused
    (10 * GiB, 1, 80 * GiB, 1.0),
    (10 * GiB, 2, 80 * GiB, 2.0),  # whole GPUs stay as asked
    (30 * GiB, 1 / 3, 80 * GiB, 0.666667),
])
def test_gpu_share(peak, share, mem, want):
    assert gpu_share(peak, share, mem) == want


def test_gpu_share_counts_the_cuda_context():
    quarter = 20 * GiB
    assert gpu_share(quarter - CUDA_CONTEXT_BYTES, 0.25, 80 * GiB) == 0.25
    assert gpu_share(quarter - CUDA_CONTEXT_BYTES + 1, 0.25, 80 * GiB) == 0.5


def test_memory_guard_refuses_what_no_gpu_holds_and_widens_big_shares():
    from optuna.trial import FixedTrial

    from nas_attn.search.gpu_packing import SHARE_KEY, guard, share_of
    from nas_attn.search.searcher import Proposal

    class Propose:
        input_size = (3, 32, 32)

        def __call__(self, trial):
            return Proposal(TINY_SE, "h", {"flops": 1.0})

    settings = {"train": {"batch_size": 64}}
    need = train_memory(TINY_SE, (3, 32, 32), settings["train"]).total + CUDA_CONTEXT_BYTES
    p = Propose()
    assert guard(p, settings, 0, 80) is p  # CPU trials: nothing to guard
    assert guard(p, {}, 0.25, 80) is p  # not a study's trainer (no train section)
    roomy = guard(p, settings, 0.25, 80)(FixedTrial({}))
    assert roomy.violation is None and roomy.costs[SHARE_KEY] == 0.25
    assert roomy.costs["memory_mb"] > 0 and roomy.costs["flops"] == 1.0
    tight = guard(p, settings, 0.25, 1.01 * need / GiB * 2)(FixedTrial({}))  # half a GPU
    assert tight.costs[SHARE_KEY] == 0.5
    refused = guard(p, settings, 0.25, 0.9 * need / GiB)(FixedTrial({}))
    assert "does not fit one GPU" in refused.violation and SHARE_KEY not in refused.costs
    assert share_of(0.25)({"costs": {SHARE_KEY: 0.5}}) == 0.5
    assert share_of(0.25)({"costs": {}}) == 0.25
