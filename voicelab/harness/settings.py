"""Settings from the environment (and a git-ignored `.env`), never from notebook parameters.

Secrets are read here and handed straight to the SDK client; nothing else keeps them, so they
cannot end up in runs, notebooks, logs or reports.
"""

from __future__ import annotations

import os
from pathlib import Path

from voicelab.spec.errors import ConfigError

HOSTED_BASE_URL = "https://api.elevenlabs.io"


def _dotenv(path: Path = Path(".env")) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def get(name: str, default: str | None = None) -> str | None:
    """The environment wins over `.env`; empty values count as unset."""
    value = os.environ.get(name) or _dotenv().get(name)
    return value or default


def given(name: str) -> str | None:
    """The value as given, an empty one included (None only when neither the environment nor
    `.env` has it): for settings where empty must not quietly mean unset (VOICELAB_API_KEY)."""
    return os.environ[name] if name in os.environ else _dotenv().get(name)


def api_key() -> str:
    key = get("ELEVENLABS_API_KEY")
    if not key:
        raise ConfigError(
            "ELEVENLABS_API_KEY is not set: the hosted backend needs an API key. "
            "Set it in the environment or in a .env file next to where you run voicelab "
            "(never in a notebook parameter), or use --backend local."
        )
    return key


def hosted_base_url() -> str:
    return get("ELEVENLABS_BASE_URL", HOSTED_BASE_URL) or HOSTED_BASE_URL


def secret_variable(name: str, agent: str | None = None) -> str:
    """A `secret__*` dynamic variable (for webhook tool headers), from the environment variable
    of the same name in capitals: secret__crm_token <- SECRET__CRM_TOKEN. `agent`: whose
    webhooks need it, named in the error."""
    value = get(name.upper())
    if not value:
        whose = f"agent '{agent}', field 'tools': its" if agent else "the agent's"
        raise ConfigError(f"{whose} webhook headers use {{{{{name}}}}}, but {name.upper()} is not set: set it in "
                          "the environment or in a .env file (secrets never go in persona files)")
    return value
