"""The scripted caller: a persona's reply rules played in one of five styles.

The behaviour itself (styles, the caller's own words per language, goodbyes) is a pure engine in
voicelab/spec/script.py, because the local backend's simulations and the virtual microphone play
it too; this is the harness's turn policy for it (`caller: scripted`, the runner registry's
default), and keeps its names importable from here.
"""

from __future__ import annotations

from voicelab.spec.script import (
    IMPATIENT_TURNS,
    LINES,
    Lines,
    ScriptedCaller,
    first_sentence,
    lines_for,
    says_goodbye,
)

__all__ = ["IMPATIENT_TURNS", "LINES", "Lines", "ScriptedCaller", "first_sentence", "lines_for", "says_goodbye"]
