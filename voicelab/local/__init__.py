"""The embedded ElevenLabs-compatible backend (see ARCHITECTURE.md §5)."""

from voicelab.local.faults import Fault, Faults, HttpFault
from voicelab.local.server import LocalBackend

__all__ = ["Fault", "Faults", "HttpFault", "LocalBackend"]
