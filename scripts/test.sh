#!/usr/bin/env bash
# Set up, then run the whole test suite (real SDK, real kernels, real Chromium, real voice calls).
#
# Without arguments, in two parts: every test but the real-time voice calls in parallel
# (pytest-xdist, 4 workers: most tests wait on sockets, kernels and audio rather than the CPU; a
# module stays on one worker, so its shared fixtures start once), then the `realtime` group on its
# own, one test at a time, since what those tests assert is timing that a loaded machine would
# spoil. (Two at a time saved a minute here but failed in CI: an agent caller bridged by voice,
# placed beside two other voice calls while another test placed three more, answered 3.7 s late
# and the flow did not reach its end. VOICELAB_REALTIME_WORKERS=2 still runs them two at a time.)
# Each part prints its 15 slowest tests. With arguments they go to one pytest run, e.g. the quick loop
# `bash scripts/test.sh -m "not slow"`, or `bash scripts/test.sh tests/lab/test_store_faults.py -p no:xdist`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
.venv/bin/ruff check voicelab tests scripts benchmarks
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache  # the layers (pyproject.toml)
PARALLEL=(-n "${VOICELAB_TEST_WORKERS:-4}" --dist loadscope --durations=15)
if [ $# -gt 0 ]; then
  exec .venv/bin/pytest "${PARALLEL[@]}" "$@"
fi
status=0
.venv/bin/pytest "${PARALLEL[@]}" -m "not realtime" || status=$?
echo "== the real-time voice calls, on their own, one at a time =="
VOICELAB_CONTRACT_KEEP=1 .venv/bin/pytest -n "${VOICELAB_REALTIME_WORKERS:-1}" --dist load --durations=15 -m realtime \
  || status=$((status > 0 ? status : $?))
echo "contract recordings: test-artifacts/contracts/ (python scripts/contracts.py table: docs/conformance.md)"
exit $status
