#!/usr/bin/env bash
# Set up, then run the whole test suite (real SDK, real kernels, real Chromium).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` for the quick half.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
.venv/bin/ruff check voicelab tests scripts benchmarks
exec .venv/bin/pytest "$@"
