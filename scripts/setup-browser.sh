#!/usr/bin/env bash
# Installs the headless browser the console test drives: Debian's Chromium at /usr/bin/chromium
# (playwright-core talks to it; its own browser downloads cannot work here, so never run
# `playwright install`). Idempotent and quiet when done; `apt-get update` only when the package
# cannot be found in the current lists.
set -euo pipefail

say() { printf 'setup-browser: %s\n' "$*" >&2; }

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    say "/usr/bin/chromium is missing and this is not root: run 'apt-get install -y chromium' as root"
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show chromium >/dev/null 2>&1 || [ -z "$(apt-cache policy chromium 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)')" ]; then
  say "refreshing the package lists (apt-get update)"
  $SUDO apt-get update -qq >/dev/null
fi
say "installing chromium (about half a minute, once)"
$SUDO apt-get install -y -qq chromium >/dev/null
if [ ! -x /usr/bin/chromium ]; then
  say "apt-get installed chromium but /usr/bin/chromium is missing"
  exit 1
fi
