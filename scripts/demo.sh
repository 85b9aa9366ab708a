#!/usr/bin/env bash
# The main job on a fresh machine: set up, then call every bundled persona 3 times against the
# local backend (200 ms agent response time per turn) and write reports/<run_id>.html.
# Extra arguments go to `voicelab run` (see `voicelab run --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
exec .venv/bin/voicelab run --repeats 3 --concurrency 16 --latency-ms 200 "$@"
