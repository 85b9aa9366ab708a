"""The embedded ElevenLabs-compatible backend (see ARCHITECTURE.md §5)."""

from .faults import Fault, Faults, HttpFault
from .server import LocalBackend

__all__ = ["Fault", "Faults", "HttpFault", "LocalBackend"]
