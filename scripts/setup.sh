#!/usr/bin/env bash
# Install everything voicelab needs on a fresh Debian machine, idempotently:
#   Debian packages (chromium for report/browser tests, espeak-ng, libportaudio2, pulseaudio, sox;
#   nodejs and npm when the machine has no Node), the Python environment in .venv (voicelab
#   editable, with its dev tools and the Dask extra for --cluster) and ElevenLabs' JavaScript
#   client in js/node_modules (pinned by js/package-lock.json; the conformance tests drive it).
# Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(chromium espeak-ng libasound2-plugins libportaudio2 pulseaudio pulseaudio-utils sox)
missing=()
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  DEB_PACKAGES+=(nodejs npm)
fi
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: voicelab needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.voicelab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv (first time: a few minutes)"
  if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e ".[api,dev,cluster]"; } \
      > .venv/pip.log 2>&1; then
    tail -n 40 .venv/pip.log >&2
    echo "setup: pip install failed; the full log is .venv/pip.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
js_stamp=js/node_modules/.voicelab-installed
if [ ! -f "$js_stamp" ] || [ js/package-lock.json -nt "$js_stamp" ]; then
  echo "setup: installing the JavaScript client into js/node_modules"
  if ! (cd js && npm ci --no-audit --no-fund --loglevel=error) > .venv/npm.log 2>&1; then
    tail -n 40 .venv/npm.log >&2
    echo "setup: npm ci failed; the full log is .venv/npm.log" >&2
    exit 1
  fi
  touch "$js_stamp"
fi
echo "setup: ready (.venv/bin/voicelab, node $(node --version))"
