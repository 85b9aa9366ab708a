"""voicelab's version, at the bottom of the house so every layer can stamp it on what it writes
(runs, reports, the service's answers). Keep it equal to pyproject.toml's `version`."""

__version__ = "0.1.0"
