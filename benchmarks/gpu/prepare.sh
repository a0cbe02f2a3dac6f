#!/usr/bin/env bash
# Prepare .whl/ for an offline GPU machine: the shared wheel set (Ray, Optuna and their
# dependencies, ../shared/gpu/wheels.sh) plus pytest for the CUDA tests. Run where pip works,
# from the project root; then carry .whl/ with the tree (it is in .git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash ../shared/gpu/wheels.sh
for p in pytest pluggy iniconfig; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp -d .whl "$p" 2>&1 | grep -v "^WARNING: Location" || true
done
grep -qx ".whl/" .git/info/exclude 2>/dev/null || echo ".whl/" >> "$(git rev-parse --git-path info/exclude)"
du -sh .whl
