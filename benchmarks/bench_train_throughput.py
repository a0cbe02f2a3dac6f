"""Training throughput of ``train_spec`` next to a bare hand-written PyTorch loop.

Same model (the quickstart's tiny ResNet with SE and CBAM), same data (cluttered-digits as the
quickstart study loads it), same batch size, optimizer, augmentation and normalisation, same
process, 2 CPU threads. The bare loop is run as one epoch inside the library's per-epoch
callback, so the two alternate epoch by epoch and share the machine's load; the slowdown is the
median of the per-epoch ratios. The first epoch of each is a warm-up and is not counted.
Target: the library loop at most 1.10x slower.

    .venv/bin/python benchmarks/bench_train_throughput.py [--epochs 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from nas_attn.arch import build_model
from nas_attn.data import load_dataset
from nas_attn.train import EpochResult, TrainConfig, train_spec

QUICKSTART_SPEC = {
    "backbone": "tiny",
    "stages": [{"attention": "se"}, None, {"attention": "cbam"}],
}


def bare_epoch(model, opt, data, normalize, batch_size: int, gen: torch.Generator) -> float:
    """One epoch of the plainest loop that does the same work; returns images per second."""
    x, y = data.train
    n = len(y)
    model.train()
    t0 = time.perf_counter()
    perm = torch.randperm(n, generator=gen)
    steps = n // batch_size
    for b in range(steps):
        idx = perm[b * batch_size:(b + 1) * batch_size]
        xb = normalize(data.augment(x[idx], gen))
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--train-size", type=int, default=1024)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    data = load_dataset({"name": "cluttered-digits", "image_size": args.image_size,
                         "distractors": 2, "train_size": args.train_size, "val_size": 500,
                         "test_size": 500})
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=0.05,
                      threads=args.threads, device="cpu", seed=0)
    torch.manual_seed(0)
    bare_model = build_model({**QUICKSTART_SPEC, "in_chans": data.input_size[0]})
    bare_opt = torch.optim.SGD(bare_model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                               weight_decay=5e-4)
    normalize = data.normalizer("cpu")
    gen = torch.Generator().manual_seed(1)
    ours: list[float] = []
    bare: list[float] = []

    def interleave(e: EpochResult) -> None:
        ours.append(e.images_per_s)
        bare.append(bare_epoch(bare_model, bare_opt, data, normalize, args.batch_size, gen))
        print(f"epoch {e.epoch}: train_spec {ours[-1]:8.0f} img/s   bare loop {bare[-1]:8.0f} "
              f"img/s", flush=True)

    train_spec(QUICKSTART_SPEC, data, cfg, interleave)
    o, b = statistics.median(ours[1:]), statistics.median(bare[1:])
    # adjacent epochs share the machine's load: the median of per-pair ratios is robust to it
    ratio = statistics.median(bi / oi for oi, bi in zip(ours[1:], bare[1:], strict=True))
    print(f"{data.summary()}; batch {args.batch_size}; {args.threads} threads")
    print(f"median images/s  train_spec {o:.0f}  bare loop {b:.0f}")
    print(f"slowdown (median of per-epoch ratios bare/train_spec) {ratio:.3f}x "
          f"(target <= 1.10x)")


if __name__ == "__main__":
    main()
