"""``make gpu-check``: the CUDA path of nas-attn measured on one GPU, in at most 8 minutes.

Steps (each records its figures, or why it was skipped, in one JSON file):

1. ``cuda_tests``: ``pytest -m cuda tests/test_cuda.py`` (AMP fp16 + scaler and bf16,
   channels_last, resident data, CUDA OOM as a typed failure, CPU/GPU accuracy, GPU
   checkpoint -> CPU -> ONNX with onnxruntime);
2. ``loop``: ``train_spec`` against a bare PyTorch loop (same model, data on the GPU, same
   augmentation, AMP and memory format), images/s of a warm epoch (target: <= 1.10x);
3. ``packing``: a real ``nas-attn search`` of a ResNet-18-CIFAR study on synthetic 32x32 data
   in the CIFAR python format at 1, 2, 4 and 8 trials per GPU: trials per hour, GPU
   utilisation and memory sampled with nvidia-smi, peak memory per trial (measured by the
   trial, beside the driver's estimate); the packing gain (target: >= 3x at the best packing);
4. ``epoch``: time per epoch of ResNet-18-CIFAR at 50,000 training images (train_spec; the
   bare loop beside it; ``--compile`` adds the bare loop under ``torch.compile``, which
   train_spec does not offer).

``--cpu-smoke`` runs every step with tiny sizes on the CPU (logical GPUs for the packing), so
the script itself is tested where no GPU is lent (tests/test_gpu_check.py). Steps past the
time budget are skipped and say so. Prints a table; writes ``--out`` (default
``benchmarks/gpu/results/gpu-check-<time>.json``), and a copy into ``$OUT`` when that is set.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
R18 = {"backbone": "resnet18_cifar", "num_classes": 10, "stages": [None] * 4}
TINY = {"backbone": "tiny", "num_classes": 10, "in_chans": 3, "stages": [None] * 3}
GATES = {"none": None, "se": {"rd_ratio": [0.0625, 0.25]}, "eca": {"k_size": ["auto", 3]},
         "cbam": {"rd_ratio": [0.0625]}}

FULL = {"budget_s": 470, "cifar_train": 55_000, "cifar_test": 2_000, "loop_images": 20_000,
        "val": 1000, "epoch_val": 5000,
        "epoch_images": 50_000, "batch": 256, "pack": [1, 2, 4, 8], "pack_images": 10_000,
        "pack_epochs": 2, "spec": R18, "backbone": "resnet18_cifar", "amp": "bf16",
        "channels_last": True, "device": "cuda", "cpus": os.cpu_count() or 16}
SMOKE = {"budget_s": 300, "cifar_train": 400, "cifar_test": 100, "loop_images": 96,
         "val": 64, "epoch_val": 64,
         "epoch_images": 96, "batch": 32, "pack": [1, 2], "pack_images": 64, "pack_trials": 2,
         "pack_epochs": 1, "spec": TINY, "backbone": "tiny", "amp": "none",
         "channels_last": False, "device": "cpu", "cpus": 2}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument("--out", type=Path, default=None, help="the JSON file to write")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp)")
    ap.add_argument("--budget-s", type=float, default=None, help="skip steps past this time")
    ap.add_argument("--steps", default="cuda_tests,loop,packing,epoch")
    ap.add_argument("--compile", action="store_true", help="also the bare loop compiled")
    args = ap.parse_args(argv)
    size = dict(SMOKE if args.cpu_smoke else FULL)
    if args.budget_s is not None:
        size["budget_s"] = args.budget_s
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu-check-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    report: dict[str, Any] = {"mode": "cpu-smoke" if args.cpu_smoke else "gpu",
                              "machine": machine(), "sizes": _jsonable(size), "steps": {}}
    if not args.cpu_smoke and not report["machine"]["cuda"]:
        print("no CUDA device here: run with --cpu-smoke, or on a GPU machine", file=sys.stderr)
        return 2
    cifar = write_cifar(work / "cifar", size["cifar_train"], size["cifar_test"])
    steps = {"cuda_tests": lambda: cuda_tests(size),
             "loop": lambda: loop_step(size, cifar, args.compile),
             "packing": lambda: packing(size, cifar, work),
             "epoch": lambda: epoch_step(size, cifar, args.compile)}
    for name in args.steps.split(","):
        left = size["budget_s"] - (time.monotonic() - t0)
        if left < 20:
            report["steps"][name] = {"skipped": f"time budget ({size['budget_s']:.0f} s) spent"}
            continue
        size["left_s"] = left
        s = time.monotonic()
        try:
            report["steps"][name] = steps[name]()
        except Exception as e:  # one broken step must not lose the others' figures
            report["steps"][name] = {"error": f"{type(e).__name__}: {e}"}
        report["steps"][name]["seconds"] = round(time.monotonic() - s, 1)
        _free()  # what a step kept cached on the GPU is not there for the next one's trials
    report["total_s"] = round(time.monotonic() - t0, 1)
    out = args.out or ROOT / "benchmarks/gpu/results" / (
        f"gpu-check-{time.strftime('%Y%m%d-%H%M%S')}{'-smoke' if args.cpu_smoke else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if os.environ.get("OUT"):
        shutil.copy(out, Path(os.environ["OUT"]) / out.name)
    print(table(report))
    print(f"written: {out}")
    bad = [n for n, s in report["steps"].items() if "error" in s or s.get("failed")]
    return 1 if bad else 0


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- the machine and the data -------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.cuda.is_available(), "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    cuda_version=torch.version.cuda, gpus=torch.cuda.device_count())
    for mod in ("ray", "optuna", "onnxruntime", "pandas"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = None
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = q.stdout.strip()
    return info


def write_cifar(folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Synthetic 32x32 images in the CIFAR-10 python format (learnable: a fixed pattern per
    class under noise). ``n_train`` includes the validation holdout."""
    import numpy as np

    root = folder / "cifar-10-batches-py"
    if (root / "test_batch").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (10, 3072), dtype=np.uint16)

    def batch(n: int) -> dict[bytes, Any]:
        y = rng.integers(0, 10, n)
        noise = rng.integers(0, 256, (n, 3072), dtype=np.uint16)
        x = ((protos[y] + noise) // 2).astype(np.uint8)
        return {b"data": x, b"labels": [int(v) for v in y]}

    per = -(-n_train // 5)
    for i in range(5):
        with open(root / f"data_batch_{i + 1}", "wb") as fh:
            pickle.dump(batch(min(per, n_train - i * per)), fh)
    with open(root / "test_batch", "wb") as fh:
        pickle.dump(batch(n_test), fh)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    return folder


def _data(cifar: Path, train: int, val: int) -> dict[str, Any]:
    return {"name": "cifar10", "root": str(cifar), "train_size": train, "val_size": val,
            "test_size": 100}


def _train(size: dict[str, Any], epochs: int) -> dict[str, Any]:
    return {"epochs": epochs, "batch_size": size["batch"], "lr": 0.1,
            "label_smoothing": 0.1, "amp": size["amp"], "channels_last": size["channels_last"],
            "device": size["device"], "eval_batch_size": 1024}


# -- 1. the CUDA tests ------------------------------------------------------------------------


def cuda_tests(size: dict[str, Any]) -> dict[str, Any]:
    import xml.etree.ElementTree as ET

    xml = Path(os.environ.get("TMPDIR", "/tmp")) / f"cuda-tests-{os.getpid()}.xml"
    cmd = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-m", "cuda", "-q", "-rs",
           "-p", "no:cacheprovider", f"--junitxml={xml}"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=min(240, size["left_s"] - 10))
    except subprocess.TimeoutExpired:
        return {"failed": True, "error": "the CUDA tests ran past their time"}
    if not xml.is_file():
        return {"failed": True, "error": (proc.stdout + proc.stderr)[-800:]}
    cases = []
    for tc in ET.parse(xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                outcome, message = tag, (el.get("message") or "")[:300]
        cases.append({"test": tc.get("name"), "outcome": outcome, "message": message,
                      "seconds": float(tc.get("time") or 0)})
    counts = {k: sum(c["outcome"] == k for c in cases)
              for k in ("passed", "failure", "error", "skipped")}
    return {"counts": counts, "cases": cases, "failed": bool(counts["failure"] + counts["error"]),
            "exit_code": proc.returncode}


# -- 2 and 4. the training loop ---------------------------------------------------------------


def bare_loop(spec: dict[str, Any], bundle: Any, cfg: Any, epochs: int,
              compile_model: bool = False) -> list[float]:
    """Images/s per epoch of the smallest loop that trains like train_spec: the same model,
    data moved to the device once, the same augmentation, AMP and memory format; SGD with a
    fixed learning rate, no schedule, no checks, no evaluation."""
    import torch
    import torch.nn.functional as F

    from nas_attn.arch import build_model
    from nas_attn.train import resolve_device

    device = resolve_device(cfg.device)
    torch.manual_seed(0)
    model = build_model(spec).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile_model else model
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                          weight_decay=cfg.weight_decay)
    x, y = (t.to(device) for t in bundle.train)
    normalize = bundle.normalizer(device)
    gen = torch.Generator(device=device).manual_seed(0)
    bs, n = cfg.batch_size, len(y)
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    amp = torch.autocast(device.type, dtype=dtype) if cfg.amp != "none" else None
    scaler = torch.amp.GradScaler(device.type) if cfg.amp == "fp16" else None
    rates = []
    for _ in range(epochs):
        model.train()
        _sync(device)
        t = time.perf_counter()
        perm = torch.randperm(n, generator=gen, device=device)
        for b in range(n // bs):
            idx = perm[b * bs:(b + 1) * bs]
            xb = normalize(bundle.augment(x[idx], gen))
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            if amp is not None:
                with amp:
                    loss = F.cross_entropy(step_model(xb), y[idx])
            else:
                loss = F.cross_entropy(step_model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
        _sync(device)
        rates.append((n // bs) * bs / (time.perf_counter() - t))
    return rates


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loop_step(size: dict[str, Any], cifar: Path, compile_model: bool) -> dict[str, Any]:
    from nas_attn.data import load_dataset
    from nas_attn.train import TrainConfig, train_spec

    bundle = load_dataset(_data(cifar, size["loop_images"], size["val"]))
    cfg = TrainConfig(**_train(size, 3))
    ours = train_spec(size["spec"], bundle, cfg)
    bare = bare_loop(size["spec"], bundle, cfg, 3)
    ours_ips = max(e.images_per_s for e in ours.epochs[1:])  # warm epochs
    bare_ips = max(bare[1:])
    out = {"images": size["loop_images"], "train_spec_images_per_s": round(ours_ips, 1),
           "bare_images_per_s": round(bare_ips, 1), "overhead": round(bare_ips / ours_ips, 3),
           "target": "<= 1.10", "val_accuracy": round(ours.val_accuracy, 4)}
    out["met"] = out["overhead"] <= 1.10
    return out


def epoch_step(size: dict[str, Any], cifar: Path, compile_model: bool) -> dict[str, Any]:
    from nas_attn.data import load_dataset
    from nas_attn.train import TrainConfig, train_spec

    bundle = load_dataset(_data(cifar, size["epoch_images"], size["epoch_val"]))
    cfg = TrainConfig(**_train(size, 2))
    r = train_spec(size["spec"], bundle, cfg)
    e1, e2 = r.epochs
    out = {"images": size["epoch_images"],
           "train_s_per_epoch": round(size["epoch_images"] / e2.images_per_s, 2),
           "epoch_s_with_eval": round(e2.elapsed_s - e1.elapsed_s, 2),
           "first_epoch_s": round(e1.elapsed_s, 2), "images_per_s": round(e2.images_per_s, 1),
           "torch_compile": "not offered by train_spec"}
    bare = bare_loop(size["spec"], bundle, cfg, 2)
    out["bare_train_s_per_epoch"] = round(size["epoch_images"] / bare[-1], 2)
    if compile_model:
        comp = bare_loop(size["spec"], bundle, cfg, 2, compile_model=True)
        out["bare_compiled_train_s_per_epoch"] = round(size["epoch_images"] / comp[-1], 2)
    return out


# -- 3. packing trials on one GPU --------------------------------------------------------------


class GpuSampler:
    """nvidia-smi every 0.5 s in the background: utilisation (%) and memory used (MiB)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.proc = None
        smi = shutil.which("nvidia-smi")
        if smi:
            self.proc = subprocess.Popen(
                [smi, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", "500"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.append((float(parts[0]), float(parts[1])))
            except (ValueError, IndexError):
                continue

    def stop(self) -> dict[str, Any]:
        if self.proc is None:
            return {"gpu_util_mean": None, "gpu_util_max": None, "gpu_mem_used_max_mib": None,
                    "samples": 0, "note": "no nvidia-smi"}
        self.proc.terminate()
        self.proc.wait(timeout=10)
        s = self.samples
        busy = [u for u, _ in s]
        return {"gpu_util_mean": round(sum(busy) / len(busy), 1) if busy else None,
                "gpu_util_max": max(busy) if busy else None,
                "gpu_mem_used_max_mib": max((m for _, m in s), default=None), "samples": len(s)}


def _study(size: dict[str, Any], cifar: Path, folder: Path, k: int, trials: int) -> Path:
    import yaml

    space = {"name": "gpu-check", "backbone": size["backbone"], "num_classes": 10,
             "input_size": [3, 32, 32],
             "stages": {"default": {"attention": GATES, "position": ["post_bn"]}}}
    if size["backbone"] == "tiny":
        space["in_chans"] = 3
    cpus = max(0.5, min(4, size["cpus"] / k))
    study = {"name": f"gpu-check-k{k}", "space": "space.yaml",
             "data": _data(cifar, size["pack_images"], size["val"]),
             "train": {**_train(size, size["pack_epochs"]), "device": "auto"},
             "objectives": [{"name": "val_accuracy", "direction": "maximize"},
                            {"name": "flops", "direction": "minimize"}],
             "early_stopping": {"enabled": False},
             "search": {"trials": trials, "sampler": "random", "seed": 0,
                        "cpus_per_trial": cpus, "gpus_per_trial": round(1 / k, 6),
                        "keep_checkpoints": False}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    (folder / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return folder / "study.yaml"


def _trial_rows(run: Path) -> list[dict[str, Any]]:
    """The last result of each Ray trial of a run (Ray's result.json, one JSON per line)."""
    rows = []
    for f in sorted(run.glob("ray/segment-*/trial_*/result.json")):
        lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        if lines:
            last = lines[-1]
            last["gpu_peak_mb"] = max((x.get("gpu_peak_mb") or 0 for x in lines), default=0)
            rows.append(last)
    return rows


def pack_once(size: dict[str, Any], cifar: Path, work: Path, k: int) -> dict[str, Any]:
    import pandas as pd

    trials = size.get("pack_trials") or max(4, 2 * k)
    folder = work / f"pack-{k}"
    shutil.rmtree(folder, ignore_errors=True)
    study = _study(size, cifar, folder, k, trials)
    cmd = [sys.executable, "-m", "nas_attn", "search", str(study), "--out", str(folder / "run"),
           "--num-cpus", str(size["cpus"]), "--num-gpus", "1", "--quiet"]
    if size["device"] == "cpu":  # logical GPU: give it a memory so the packing guard runs
        cmd += ["--gpu-memory-gb", "16"]
    sampler = GpuSampler()
    t = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=max(30, size["left_s"] - 15))
    except subprocess.TimeoutExpired:
        sampler.stop()
        return {"trials_per_gpu": k, "trials": trials, "error": "ran past the time budget"}
    wall = time.monotonic() - t
    gpu = sampler.stop()
    out: dict[str, Any] = {"trials_per_gpu": k, "trials": trials, "wall_s": round(wall, 1),
                           "exit_code": proc.returncode, **gpu}
    csv = folder / "run" / "trials.csv"
    if proc.returncode != 0 or not csv.is_file():
        out["error"] = (proc.stdout + proc.stderr)[-800:]
        return out
    df = pd.read_csv(csv, parse_dates=["datetime_start", "datetime_complete"])
    done = df[df["state"].isin(["COMPLETE", "PRUNED"]) & ~df["reused"].eq(True)]
    span = (done["datetime_complete"].max() - done["datetime_start"].min()).total_seconds()
    rows = _trial_rows(folder / "run")
    peaks = [r["gpu_peak_mb"] for r in rows if r.get("gpu_peak_mb")]
    est = [r["memory_mb"] for r in rows if r.get("memory_mb")]
    out.update(trained=len(done), span_s=round(span, 1),
               trials_per_hour=round(len(done) / span * 3600, 1) if span > 0 else None,
               peak_mb_per_trial=max(peaks) if peaks else None,
               estimate_mb_per_trial=max(est) if est else None,
               devices=sorted({str(r.get("cuda_visible_devices")) for r in rows}),
               failed=int((df["state"] == "FAIL").sum()))
    if out["failed"]:
        out["fail_reasons"] = df[df["state"] == "FAIL"]["fail_reason"].value_counts().to_dict()
    return out


def packing(size: dict[str, Any], cifar: Path, work: Path) -> dict[str, Any]:
    runs = []
    t0 = time.monotonic()
    for k in size["pack"]:
        left = size["left_s"] - (time.monotonic() - t0)
        if left < 45:
            runs.append({"trials_per_gpu": k, "skipped": "time budget spent"})
            continue
        runs.append(pack_once({**size, "left_s": left}, cifar, work, k))
    rates = {r["trials_per_gpu"]: r.get("trials_per_hour") for r in runs}
    out: dict[str, Any] = {"runs": runs, "target": ">= 3x trials/hour at the best packing"}
    if rates.get(1) and sum(1 for v in rates.values() if v) >= 2:
        best_k = max((k for k, v in rates.items() if v), key=lambda k: rates[k])
        out.update(best_trials_per_gpu=best_k, gain=round(rates[best_k] / rates[1], 2))
        out["met"] = out["gain"] >= 3
    out["failed"] = any("error" in r for r in runs)
    return out


# -- the table --------------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"gpu-check ({report['mode']}) on {m.get('gpu', 'CPU')}, torch {m['torch']}, "
             f"Python {m['python']}; {report.get('total_s')} s", ""]
    lines.append(f"{'step':<12} {'figure':<40} value")
    s = report["steps"]

    def row(step: str, fig: str, val: Any) -> None:
        lines.append(f"{step:<12} {fig:<40} {val}")

    for name, d in s.items():
        if "skipped" in d or ("error" in d and name != "packing"):
            row(name, "skipped" if "skipped" in d else "error", d.get("skipped") or d["error"])
    c = s.get("cuda_tests", {})
    if "counts" in c:
        row("cuda_tests", "passed / failed / skipped", f"{c['counts']['passed']} / "
            f"{c['counts']['failure'] + c['counts']['error']} / {c['counts']['skipped']}")
    lo = s.get("loop", {})
    if "overhead" in lo:
        row("loop", "train_spec / bare images/s", f"{lo['train_spec_images_per_s']} / "
            f"{lo['bare_images_per_s']}")
        row("loop", "overhead (target <= 1.10)", f"{lo['overhead']}x")
    for r in s.get("packing", {}).get("runs", []):
        k = r["trials_per_gpu"]
        if "trials_per_hour" in r:
            row("packing", f"{k}/GPU trials/h, util mean, peak MiB",
                f"{r['trials_per_hour']}, {r['gpu_util_mean']} %, {r['peak_mb_per_trial']} "
                f"(est {r['estimate_mb_per_trial']})")
        else:
            row("packing", f"{k}/GPU", r.get("skipped") or re.sub(r"\s+", " ",
                                                                 r.get("error", ""))[-120:])
    p = s.get("packing", {})
    if "gain" in p:
        row("packing", "gain at the best packing (target >= 3x)",
            f"{p['gain']}x at {p['best_trials_per_gpu']}/GPU")
    e = s.get("epoch", {})
    if "train_s_per_epoch" in e:
        row("epoch", f"train s/epoch at {e['images']} images", e["train_s_per_epoch"])
        row("epoch", "bare loop s/epoch", e["bare_train_s_per_epoch"])
        if "bare_compiled_train_s_per_epoch" in e:
            row("epoch", "bare loop compiled s/epoch", e["bare_compiled_train_s_per_epoch"])
    return "\n".join(lines)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
