#!/usr/bin/env bash
# Issue 23 item 4: the one-shot search of a large space end to end, timed (docs/one-shot.md,
# "A large space end to end"). Run from the repository root on a quiet machine:
#   benchmarks/oneshot/run_large.sh [STUDY] [OUT]
# defaults: studies/resnet20-oneshot.yaml, runs/resnet20-oneshot-<UTC time>. Writes OUT.log
# (the search's output and /usr/bin/time -v: wall time, peak RSS) and prints a summary.
set -euo pipefail
STUDY=${1:-studies/resnet20-oneshot.yaml}
OUT=${2:-runs/resnet20-oneshot-$(date -u +%Y%m%dT%H%M%SZ)}
PY=${PYTHON:-.venv/bin/python}
LOG="$OUT.log"
mkdir -p "$(dirname "$OUT")"
echo "study $STUDY -> $OUT (log $LOG); started $(date -u +%FT%TZ)"
set +e
PYTHONPATH=$PWD /usr/bin/time -v "$PY" -m nas_attn search "$STUDY" --out "$OUT" >"$LOG" 2>&1
rc=$?
set -e
echo "finished $(date -u +%FT%TZ), exit $rc"
"$PY" benchmarks/oneshot/summarize_run.py "$OUT" "$LOG"
exit $rc
