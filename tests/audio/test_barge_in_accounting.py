"""Which interruption is a barge-in's stop: only one of the agent turn it talked over. A caller's
later turn that overlaps another agent turn (and gets it interrupted) is no stop of a backchannel
the agent talked on through. The synthetic voice with a fake clock; no call."""

from __future__ import annotations

import asyncio

from voicelab.audio.synthetic import SyntheticVoice


def a_barge_in_over(turn_closed: bool) -> dict:
    now = [10.0]
    voice = SyntheticVoice("en-us", clock=lambda: now[0])
    voice.barge_in(b"\1\0" * 1600)
    voice.barge_ins[-1]["onset"] = 10.0  # its first loud frame went out at 10 s
    if turn_closed:
        voice.barge_ins[-1]["closed"] = True  # the agent began its next turn (VoiceSide.on_agent_turn)
    now[0] = 32.0
    asyncio.run(voice.interrupt())  # an interruption 22 s later
    return voice.barge_ins[-1]


def test_an_interruption_of_a_later_turn_is_not_the_barge_ins_stop() -> None:
    barge = a_barge_in_over(turn_closed=True)
    assert barge["interruption"] is None


def test_an_interruption_of_the_talked_over_turn_is_its_stop() -> None:
    barge = a_barge_in_over(turn_closed=False)
    assert barge["interruption"] == 32.0


def test_the_next_agent_turn_closes_the_barge_in(dataset) -> None:
    """VoiceSide closes the barge-in once the agent begins the turn after the talked-over one."""
    from voicelab.harness.transcript import TranscriptRecorder
    from voicelab.harness.voice_call import VoiceSide
    from voicelab.spec.models import Interrupt

    request = dataset.request("anna-double-charge", mode="voice")
    caller = request.persona.caller.model_copy(update={"interrupt": Interrupt(
        after_ms=800, say="Uh-huh.", agent_turn=2, backchannel=True)})
    request = request.model_copy(update={"persona": request.persona.model_copy(update={"caller": caller})})
    voice = SyntheticVoice("en-us", clock=lambda: 0.0)
    side = VoiceSide(request, TranscriptRecorder(), voice)
    voice.barge_in(b"\1\0" * 1600)
    side.on_agent_turn(1)
    assert not voice.barge_ins[-1].get("closed")
    side.on_agent_turn(3)
    assert voice.barge_ins[-1]["closed"]
