"""Summary of a finished one-shot run (docs/one-shot.md, "A large space end to end"):
front size, confirmed against predicted accuracy with their rank correlation, the phases'
times from run.json and the run's log.

    python benchmarks/oneshot/summarize_run.py RUN_DIR [LOG]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

from nas_attn.search.results import load_run  # noqa: E402
from nas_attn.viz.oneshot_view import predicted_vs_confirmed  # noqa: E402


def main(run_dir: str, log: str | None = None) -> None:
    run = load_run(run_dir)
    oneshot = run.info.get("oneshot") or {}
    print(f"phase {oneshot.get('phase')}; supernet {json.dumps(oneshot.get('supernet'))}")
    d = predicted_vs_confirmed(run.study)
    if d is None:
        print("no confirmed trial carries a prediction")
    else:
        for n, p, c in zip(d.numbers, d.predicted, d.confirmed, strict=True):
            print(f"trial {n}: predicted {p:.4f}, confirmed {c:.4f}")
        print(d.caption())
    front = run.front()
    print(f"front: {len(front)} architecture(s)")
    if len(front):
        cols = [c for c in ("number", "val_accuracy", "flops") if c in front.columns]
        print(front[cols].to_string(index=False))
    if log and Path(log).is_file():
        for line in Path(log).read_text(errors="replace").splitlines():
            if re.search(r"one-shot \d/3|finished:|Pareto front|Elapsed \(wall|Maximum resident",
                         line):
                print(line.strip())


if __name__ == "__main__":
    main(*sys.argv[1:3])
