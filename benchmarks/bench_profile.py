"""How fast the cost model answers: profiling a new spec and a cached one.

Targets (docs/cost-model.md): a new resnet18_cifar spec at 32x32 in <= 50 ms (median, 2 CPU
threads); a cached profile in <= 1 ms.

    python benchmarks/bench_profile.py [--repeats 20] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

TARGET_NEW_MS = 50.0
TARGET_CACHED_MS = 1.0


def _specs():
    """Distinct resnet18_cifar specs (gate x stage x position), so each one is new."""
    from nas_attn.modules import module_names

    for name, stage, pos in itertools.cycle(
        itertools.product(module_names("gate"), range(4), ("post_bn", "pre", "post_add"))
    ):
        if name in ("pam", "cam"):  # fine too, but quadratic in H*W: keep the mix typical
            continue
        stages = [None] * stage + [{"attention": {"type": name}, "position": pos}]
        yield {"backbone": "resnet18_cifar", "stages": stages}


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from nas_attn.cost import clear_cache, profile

    torch.set_num_threads(args.threads)
    specs = _specs()
    profile(next(specs))  # imports, first-call set-up

    def new() -> None:
        clear_cache()
        profile(next(specs))

    new_ms = _median_ms(new, args.repeats)
    spec = next(specs)
    profile(spec)
    cached_ms = _median_ms(lambda: profile(spec), args.repeats * 10)
    out = {
        "threads": args.threads,
        "new_spec_ms": round(new_ms, 3),
        "new_spec_target_ms": TARGET_NEW_MS,
        "cached_ms": round(cached_ms, 4),
        "cached_target_ms": TARGET_CACHED_MS,
        "ok": new_ms <= TARGET_NEW_MS and cached_ms <= TARGET_CACHED_MS,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"new resnet18_cifar spec at 32x32: {new_ms:8.2f} ms  (target <= {TARGET_NEW_MS})")
        print(f"cached profile:                   {cached_ms:8.4f} ms  (target <= {TARGET_CACHED_MS})")
        print("OK" if out["ok"] else "OVER TARGET")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
