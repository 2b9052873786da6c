#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the browser tests if they are absent.
# Needs root (as on CI and the team's machines); prints what it did.
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "==> chromium present: $(command -v chromium)"
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "==> chromium missing and not root: cannot install it" >&2
  exit 1
fi
echo "==> installing Debian packages chromium and chromium-driver for the browser tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1
command -v chromium >/dev/null 2>&1
