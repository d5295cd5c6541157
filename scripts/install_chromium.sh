#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the browser tests (lss_pipeline_tests/ui).
# Playwright drives this system binary; we never run `playwright install` (no downloads
# from outside the package registries).
set -euo pipefail

CHROMIUM=${LSS_CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
    echo "chromium present: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "chromium missing at $CHROMIUM and not root (no passwordless sudo)." >&2
        echo "Install it yourself: sudo apt-get install -y chromium  (Debian/Ubuntu)," >&2
        echo "or point LSS_CHROMIUM at an existing Chromium/Chrome binary." >&2
        exit 1
    fi
else
    SUDO=""
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium missing at $CHROMIUM and apt-get is not available on this system." >&2
    echo "Install Chromium with your package manager or set LSS_CHROMIUM." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-liberation
echo "installed: $("$CHROMIUM" --version)"
