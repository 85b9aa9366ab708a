"""voicelab: test ElevenLabs voice agents with personas, from notebooks and batches."""

__version__ = "0.1.0"
