#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the dashboard browser test
# (tests/test_dashboard_browser.py, marker `browser`). Idempotent: a second run only checks.
# Playwright drives this binary (executable_path=/usr/bin/chromium); `playwright install`
# (which downloads its own browser build) is never needed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "[chromium] $(chromium --version 2>/dev/null || echo present)"
  exit 0
fi
echo "[chromium] installing Chromium (Debian package)"
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq chromium >/dev/null
echo "[chromium] $(chromium --version 2>/dev/null || echo installed)"
