#!/usr/bin/env bash
# Set up, then open the live call console (notebooks/live_call.ipynb) in JupyterLab.
# Extra arguments go to `jupyter lab` (e.g. --port 8899 --no-browser).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
extra=()
if [ "$(id -u)" = 0 ]; then
  extra+=(--allow-root)  # root (containers, CI boxes) is fine; JupyterLab only wants it said
fi
exec .venv/bin/jupyter lab notebooks/live_call.ipynb "${extra[@]}" "$@"
