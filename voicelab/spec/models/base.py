"""The pieces several model modules share: the strict base of input models, ids, languages,
texts by language, the call's backend/mode/caller kinds, and the timestamp format. Here so that
no model module has to import another only for these.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

Backend = Literal["local", "elevenlabs"]
Mode = Literal["text", "voice"]

#: The languages an ElevenLabs agent speaks (ISO 639-1, and fil); a region may follow: pt-BR.
LANGUAGES = {"en", "ja", "zh", "de", "hi", "fr", "ko", "pt", "it", "es", "id", "nl", "tr", "fil", "pl", "sv", "bg",
             "ro", "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "ru", "hu", "no", "vi"}
ID_PATTERN = re.compile(r"^[a-z0-9-]+$")
E164_PATTERN = re.compile(r"^\+[1-9][0-9]{6,14}$")

def known_language(value: str) -> str:
    if value.split("-")[0].lower() not in LANGUAGES:
        raise ValueError(f"unknown language {value!r}: use a code an ElevenLabs agent speaks "
                         f"({', '.join(sorted(LANGUAGES))})")
    return value


#: Longest persona, agent or variant id: ids become file names (`<variant>-<persona>#<n>.wav`), which
#: a file system allows 255 bytes.
MAX_ID = 64


def _id_shape(value: str) -> str:
    if not ID_PATTERN.match(value):
        raise ValueError("must be lowercase letters, digits and dashes ([a-z0-9-]+)")
    if len(value) > MAX_ID:
        raise ValueError(f"is {len(value)} characters long: use at most {MAX_ID} (ids become file names)")
    return value


#: Persona and agent ids: they become file names, test names and CLI arguments.
Id = Annotated[str, AfterValidator(_id_shape)]


#: Who plays the persona: a name in the runner registry (voicelab/harness/runners/__init__.py).
#: A plain name here: the data models know no code that places calls, so the registry checks it
#: at the edge (a loaded experiment file, the CLI's choices, preflight and `Call`).
CallerKind = str

#: A text that may differ by language: a plain string, or {"en": "...", "de": "..."}.
LocalText = str | dict[str, str]


def pick_language(text: LocalText, language: str) -> str:
    """Choose the variant of `text` for `language`, falling back to English, then the first."""
    if isinstance(text, str):
        return text
    return text.get(language) or text.get("en") or next(iter(text.values()), "")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
