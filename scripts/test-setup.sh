#!/usr/bin/env bash
# Installs and starts what the test suite needs beyond the Python environment
# (system packages, servers). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
for s in scripts/setup.d/*.sh; do
  [ -e "$s" ] || continue
  bash "$s"
done
