"""One error hierarchy for everything a user can get wrong or run into.

Every error carries the fix in its message, so the CLI can print `str(err)` and exit without a
traceback. `retryable` says whether trying the same thing again may work (a busy backend) or is
pointless (a typo in a persona file).

    VoiceLabError
    ├── DatasetError        a persona or agent file is invalid (names file, persona id, field)
    ├── ConfigError         a setting or environment variable is missing or wrong
    ├── BackendError        the backend refused or could not be reached
    ├── RunStoreError       a stored run is missing or unreadable
    └── MissingDependency   an optional part is not installed (names what to install)
"""

from __future__ import annotations


class VoiceLabError(Exception):
    """Root of all voicelab errors; `str()` is a complete, readable message."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

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


class ConfigError(VoiceLabError):
    """A setting is missing or wrong (API key, agent id, backend name, path)."""


class BackendError(VoiceLabError):
    """The backend refused the request or could not be reached."""


class RunStoreError(VoiceLabError):
    """A stored run is missing or unreadable."""


class MissingDependency(VoiceLabError):
    """An optional dependency is missing; the message names the package or extra to install."""
