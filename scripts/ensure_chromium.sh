#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the browser tests if they are absent.
# Needs root (as on CI and the team's machines); prints what it did.
set -u
have_font() { fc-list 2>/dev/null | grep -qiE "ipa|noto.*cjk|takao|vl gothic"; }
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && have_font; then
  echo "==> chromium present: $(command -v chromium)"
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "==> chromium missing and not root: cannot install it" >&2
  exit 1
fi
echo "==> installing Debian packages chromium, chromium-driver and fonts-ipafont-gothic (Japanese) for the browser tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq chromium chromium-driver fonts-ipafont-gothic >/dev/null 2>&1
command -v chromium >/dev/null 2>&1
