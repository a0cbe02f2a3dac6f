#!/usr/bin/env bash
# make gpu-check: the GPU check of docs/benchmarks.md on one GPU, in at most 8 minutes.
#
# On an offline GPU machine (Python and PyTorch preinstalled, no Ray, Optuna or plotly), first
# prepare the wheels where pip works:  bash benchmarks/gpu/prepare.sh   (-> .whl/, ~50 MiB)
# They are installed here into a private folder (never over the machine's torch) when .whl/
# is present. Arguments go to gpu_check.py (--cpu-smoke, --steps, --budget-s, --compile, --out).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && [ ! -d .whl ]; then PY=.venv/bin/python; fi
site=${NAS_ATTN_GPU_SITE:-/tmp/nas-attn-gpu-site}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  if [ ! -f "$site/.done" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
      .whl/*.whl
    touch "$site/.done"
  fi
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled} PYTHONUNBUFFERED=1
missing=$("$PY" - <<'PY'
import importlib.util as u
need = ["torch", "numpy", "yaml", "ray", "optuna", "pandas", "typer", "rich", "safetensors",
        "pytest", "onnx", "onnxruntime"]
print(" ".join(n for n in need if u.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then
  echo "gpu-check: missing Python packages: $missing (steps that need them report an error)" >&2
fi
exec "$PY" benchmarks/gpu/gpu_check.py "$@"
