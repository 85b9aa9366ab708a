#!/usr/bin/env bash
# Re-pin ElevenLabs' own clients (contracts/judges.toml) and install them: scripts/judges.py refresh.
# e.g. `bash scripts/refresh-judges.sh --latest`, or `bash scripts/refresh-judges.sh @elevenlabs/client=1.26.0`.
cd "$(dirname "$0")/.." && exec .venv/bin/python scripts/judges.py refresh "$@"
