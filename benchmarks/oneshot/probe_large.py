"""Size a one-shot study on a large space (docs/one-shot.md, "A large space end to end").

Short probes, one thread: one supernet epoch (SPOS) on ``--train`` images, the score (BN
recalibration + validation on ``--val`` images) of ``--scores`` sampled architectures, and one
stand-alone training epoch of ``--standalone`` sampled architectures on ``--train`` images.
Prints seconds; the extrapolation to a study's sizes is done by hand in the docs.

    python benchmarks/oneshot/probe_large.py --space search_spaces/resnet20_zoo_oneshot.yaml \\
        --train 1000 --val 1000 --scores 5 --standalone 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

import torch  # noqa: E402

from nas_attn.data import load_dataset  # noqa: E402
from nas_attn.oneshot import build_supernet, calibration_batches, score, train_supernet  # noqa: E402
from nas_attn.space import load_space  # noqa: E402
from nas_attn.train import TrainConfig, train_spec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", required=True)
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--scores", type=int, default=5)
    ap.add_argument("--standalone", type=int, default=2)
    ap.add_argument("--calib", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    out: dict = {"space": a.space, "train": a.train, "val": a.val}
    t = time.perf_counter()
    data = load_dataset({"name": "cluttered-digits", "image_size": a.image_size,
                         "train_size": a.train, "val_size": a.val, "test_size": 100})
    out["data_s"] = time.perf_counter() - t
    space = load_space(a.space).with_data(num_classes=10)
    t = time.perf_counter()
    sn = build_supernet(space, seed=a.seed)
    out["build_s"] = time.perf_counter() - t
    out["supernet_params_M"] = sum(p.numel() for p in sn.parameters()) / 1e6
    cfg = TrainConfig(epochs=1, batch_size=64, optimizer="sgd", lr=0.05, threads=1)
    t, c = time.perf_counter(), time.process_time()
    run = train_supernet(sn, data, cfg, "spos")
    out["supernet_epoch_s"] = time.perf_counter() - t
    out["supernet_epoch_cpu_s"] = time.process_time() - c
    out["supernet_train_loss"] = run.epochs[-1].train_loss
    print(json.dumps(out), flush=True)
    calib = calibration_batches(data, a.calib, 64)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=a.seed))
    specs = []
    for _ in range(max(a.scores, a.standalone)):
        tr = study.ask()
        specs.append(space.suggest(tr))
    c = time.process_time()
    ms = [score(sn, s, data, calib).ms for s in specs[:a.scores]]
    out["score_cpu_s_mean"] = (time.process_time() - c) / max(a.scores, 1)
    out["score_ms"] = [round(m) for m in ms]
    out["score_ms_median"] = statistics.median(ms)
    print(json.dumps(out), flush=True)
    times: list[float] = []
    cpus: list[float] = []
    for s in specs[:a.standalone]:
        t, c = time.perf_counter(), time.process_time()
        train_spec(s, data, TrainConfig(epochs=1, batch_size=64, optimizer="sgd", lr=0.05,
                                        threads=1))
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        print(json.dumps({"cpu_s": cpus[-1], "standalone_spec": s.to_dict() if hasattr(s, "to_dict") else str(s),
                          "epoch_s": times[-1]}), flush=True)
    out["standalone_epoch_s"] = [round(x, 1) for x in times]
    out["standalone_epoch_cpu_s"] = [round(x, 1) for x in cpus]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
