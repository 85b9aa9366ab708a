#!/usr/bin/env bash
# Refresh contracts/ (the Agents websocket's AsyncAPI from github.com/elevenlabs/packages, the OpenAPI document embedded in npm @elevenlabs/cli-linux-x64): see contracts/README.md.
cd "$(dirname "$0")/.." && exec .venv/bin/python scripts/contracts.py refresh "$@"
