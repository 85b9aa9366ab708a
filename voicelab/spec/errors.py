"""One error hierarchy for everything a user can get wrong or run into.

Every error carries the fix in its message, so the CLI can print `str(err)` and exit 2 without
a traceback. Each leaf means one thing; catch the leaf you can act on, or `VoiceLabError` for all.

    VoiceLabError
    ├── DatasetError        a persona or agent file is invalid (names file, persona id, field)
    ├── UsageError          an argument or option combination the API or CLI does not accept
    │   └── InvalidField    one field of a REST request is wrong (names the field)
    ├── ConfigError         a setting or environment variable is missing or wrong (key, agent id, device)
    ├── BackendError        the backend refused a request or could not be reached
    ├── SdkError            the installed elevenlabs SDK lacks something voicelab relies on
    ├── RunStoreError       a stored run is unreadable, or its state refuses what was asked
    │   ├── StoreNotWritable  the run store cannot be written (read-only, full disk): names the path
    │   └── RunNotFound     no run has that id
    ├── ReportError         a report could not be built (the notebook failed or is missing)
    └── MissingDependency   an optional part is not installed (names what to install)
"""

from __future__ import annotations

__all__ = [
    "BackendError", "ConfigError", "DatasetError", "InvalidField", "MissingDependency", "ReportError", "RunNotFound",
    "RunStoreError", "SdkError", "StoreNotWritable", "UsageError", "VoiceLabError",
]


class VoiceLabError(Exception):
    """Root of all voicelab errors; `str()` is a complete, readable message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class DatasetError(VoiceLabError):
    """A persona or agent file is invalid. The message names file, persona id and field."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        persona: str | None = None,
        agent: str | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.file, self.persona, self.agent, self.field = file, persona, agent, field
        where = []
        if file:
            where.append(str(file))
        if persona:
            where.append(f"persona '{persona}'")
        if agent:
            where.append(f"agent '{agent}'")
        if field:
            where.append(f"field '{field}'")
        message = (": ".join([", ".join(where), problem]) if where else problem)
        if fix:
            message += f" (fix: {fix})"
        super().__init__(message)


class UsageError(VoiceLabError):
    """Arguments that do not fit together (a caller that cannot run in a batch, text mode with a
    microphone, a call used before it started)."""


class InvalidField(UsageError):
    """One field of a REST request names something that does not exist or cannot be used."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


class ConfigError(VoiceLabError):
    """A setting is missing or wrong (API key, agent id, phone number id, audio device)."""


class BackendError(VoiceLabError):
    """The backend refused the request or could not be reached."""


class SdkError(VoiceLabError):
    """The installed `elevenlabs` package lacks an attribute voicelab relies on (voicelab/harness/sdk.py)."""


class RunStoreError(VoiceLabError):
    """A stored run is unreadable, or its state refuses what was asked: its id is taken, another
    process is placing it, or it is not running (nothing to cancel)."""


class RunNotFound(RunStoreError):
    """No stored run has that id (the message lists recent ones)."""


class StoreNotWritable(RunStoreError):
    """The run store cannot be written (a read-only folder or file, a full disk, a path that is
    too long). The message names the path and the fix; `path` is that path and `kept` where the
    results that could not be stored were written instead (None when there were none)."""

    def __init__(self, message: str, *, path: str, kept: str | None = None) -> None:
        self.path, self.kept = path, kept
        super().__init__(message)


class ReportError(VoiceLabError):
    """A report could not be built: its notebook is missing or failed while executing."""


class MissingDependency(VoiceLabError):
    """An optional dependency is missing; the message names the package or extra to install."""
