"""The voice half of a call: the caller's audio source (the persona's synthetic voice, or a
microphone and speaker), the recording on the call's clock, and the voice metrics.

- response latency: end of the caller's speech -> the agent's answer (agent_response arrives
  with its first audio chunk);
- interruptions: the backend's `interruption` events (the agent was cut off);
- talk ratio: seconds the caller spoke / seconds of agent audio;
- WER: what the agent heard (user_transcript) against what the persona said, turn by turn.

A caller turn the persona speaks is recorded with what it said (`said`); when the agent's speech
recognition reports it, its `text` becomes what the agent heard. Reports come one per turn the
agent took, so each goes to the awaiting turn whose words it is closest to (the latest on a tie):
a backchannel the agent talked over is never reported, and reads "" once a later turn is.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from voicelab.harness.transcript import TranscriptRecorder
from voicelab.spec.errors import UsageError
from voicelab.spec.models import BargeIn, CallRequest, HangUp, VoiceStats
from voicelab.spec.transcripts import word_error_rate

PAUSE_S = 0.3  # a polite caller's pause after the agent stops talking
AUDIO_WAIT_S = 2.0  # how long to wait for the agent's audio after its text (none in text-only agents)


def audio_source(request: CallRequest, audio: Any, recorder: TranscriptRecorder) -> Any:
    """The one place a call's audio source is chosen: none in text mode; in voice mode the given
    device (a human at a microphone) or the persona's synthetic voice."""
    if request.mode == "text":
        if audio is not None:
            raise UsageError("audio was given for a text-mode call: use mode='voice' (or drop the audio device)")
        return None
    # the audio side (numpy, espeak) is imported by voice calls only: every call passes here
    from voicelab.audio.speech import voice_for
    from voicelab.audio.synthetic import SyntheticVoice

    if audio is None:
        if request.caller == "human":
            raise UsageError("a human voice call needs a microphone and speaker: pass "
                             "audio=SoundDeviceAudio(...) (or use the console / `voicelab call --caller human`)")
        return SyntheticVoice(voice_for(request.persona.id, request.persona.language), recorder.elapsed,
                              condition=request.persona.caller.audio, seed=request.call_id or request.persona.id)
    return audio


def _ms(start: float | None, end: float | None) -> float | None:
    return round((end - start) * 1000, 1) if start is not None and end is not None else None


class VoiceSide:
    """A voice call's audio side; `audio` comes from `audio_source` and is recorded on the
    call's clock."""

    def __init__(self, request: CallRequest, recorder: TranscriptRecorder, audio: Any) -> None:
        from voicelab.audio.wav import StereoRecorder  # numpy: voice calls only

        self.recorder = recorder
        recorder.auto_latency = False
        self.wav = StereoRecorder()
        audio.clock, audio.recorder = recorder.elapsed, self.wav
        self.audio = audio
        self.barges_in = request.persona.caller.style == "interrupting"
        self.interrupt = request.persona.caller.interrupt
        self._barge: asyncio.Task | None = None
        #: Agent turns (1-based) the caller took the floor in with a timed barge-in: no reply to them.
        self.talked_over: set[int] = set()
        #: (what the persona said, what the agent heard) per caller turn the agent reported: for WER.
        self.pairs: list[tuple[str, str]] = []
        self.audio_path: str | None = None
        self._lock = asyncio.Lock()

    def latency_to(self, at: float) -> float | None:
        """ms from the end of the caller's last speech to the agent's answer at `at` (once per utterance)."""
        end = self.audio.speech_end
        if end is None or getattr(self.audio, "speaking", False) or at < end:
            return None
        self.audio.speech_end = None
        return round((at - end) * 1000, 1)

    def on_agent_turn(self, number: int) -> None:
        """The agent began its `number`-th turn (1: its first message): time a barge-in over it."""
        spec = self.interrupt
        if spec is not None and number == spec.agent_turn and self._barge is None and hasattr(self.audio, "barge_in"):
            self._barge = asyncio.create_task(self._talk_over(number))
        elif spec is not None and number > spec.agent_turn:
            # the talked-over turn is over: an interruption from now on (the caller's own later
            # turn over another agent turn) is not this barge-in's stop
            for raw in getattr(self.audio, "barge_ins", []):
                raw["closed"] = True

    async def _talk_over(self, number: int) -> None:
        """`caller.interrupt`: start talking `after_ms` after the agent's audio for this turn began."""
        spec, audio = self.interrupt, self.audio
        assert spec is not None
        pcm = await audio.render(spec.say)  # ready before the moment comes
        for _ in range(int(AUDIO_WAIT_S / 0.005)):
            if audio.agent_playing:
                break
            await asyncio.sleep(0.005)
        began = self.recorder.elapsed()
        await asyncio.sleep(max(0.0, began + spec.after_ms / 1000 - self.recorder.elapsed()))
        if not audio.agent_playing:
            return  # the turn was over before the moment came: nothing to talk over (no barge-in recorded)
        if not spec.backchannel:
            self.talked_over.add(number)
        self.recorder.add("user", spec.say, said=spec.say)
        audio.barge_in(pcm)

    async def turn(self, lines: list[str], hang_up: bool, events: asyncio.Queue, agent_turn: int = 0) -> None:
        """Speak one caller turn: after the agent has finished, or over it (interrupting style).
        Nothing is said to a turn the caller took the floor in (it waits for the agent's answer)."""
        heard_so_far = self.audio.agent_audio_s
        async with self._lock:  # one utterance at a time, in order
            if not self.barges_in:
                # agent_response comes just before its audio: wait for the audio, then its end
                for _ in range(int(AUDIO_WAIT_S / 0.02)):
                    if self.audio.agent_audio_s > heard_so_far:
                        break
                    await asyncio.sleep(0.02)
                await self.audio.until_quiet()
                await asyncio.sleep(PAUSE_S)
            if agent_turn in self.talked_over:
                lines = []
            text = " ".join(lines)
            if text:
                self.recorder.add("user", text, said=text)
                await self.audio.say(text)
            if hang_up:
                await self.audio.until_quiet(both=False)
                await asyncio.sleep(PAUSE_S)
                events.put_nowait(HangUp())

    def barge_ins(self) -> list[BargeIn]:
        """The timed barge-ins so far, judged against the transcript: was the cut turn corrected,
        and did the agent's next turn (after the caller's words) answer rather than repeat it?"""
        spec, out = self.interrupt, []
        if spec is None:
            return out
        entries = self.recorder.entries()
        agent_turns = [e for e in entries if e.speaker == "agent"]
        cut = agent_turns[spec.agent_turn - 1] if len(agent_turns) >= spec.agent_turn else None
        for raw in getattr(self.audio, "barge_ins", []):
            onset, stop, event = raw["onset"], raw["audio_stop"], raw["interruption"]
            ends = (onset or 0.0) + (raw["seconds"] or 0.0)
            following = next((e for e in agent_turns if e.timestamp > ends), None)
            meant = cut.original_text or cut.text if cut is not None else None
            out.append(BargeIn(agent_turn=spec.agent_turn, said=spec.say, backchannel=spec.backchannel,
                               onset_s=round(onset, 3) if onset is not None else None,
                               interruption_ms=_ms(onset, event), audio_stop_ms=_ms(onset, stop),
                               stopped=event is not None,
                               corrected=cut is not None and cut.original_text is not None,
                               answered=following is not None and following.text != meant))
        return out

    def on_heard(self, text: str) -> None:
        """The agent's speech recognition reported a caller turn (`user_transcript`): it is the
        awaiting turn whose words it is closest to (the latest on a tie, as when nothing matches:
        the agent answers what it heard last), whose `text` becomes `text`."""
        waiting = self.recorder.awaiting()
        if not waiting:
            self.recorder.hear(None, text)  # words the persona did not say (noise), or more of its turn
            return
        index, said = min(waiting, key=lambda turn: (min(1.0, word_error_rate(turn[1], text)), -turn[0]))
        self.recorder.hear(index, text)
        self.pairs.append((said, text))

    def finish(self) -> None:
        """The call has ended: caller turns the agent never reported hearing read ""."""
        self.recorder.stop_hearing()

    def stats(self) -> VoiceStats:
        """The figures so far (final once the call has ended and `save` ran)."""
        pairs = list(self.pairs)
        wer = round(sum(word_error_rate(s, h) for s, h in pairs) / len(pairs), 3) if pairs else None
        audio = self.audio
        return VoiceStats(interruptions=audio.interruptions, caller_speech_s=audio.caller_speech_s,
                          agent_audio_s=audio.agent_audio_s, late_frames=getattr(audio, "late_frames", 0),
                          input_level=getattr(audio, "level", 0.0), wer=wer, audio_path=self.audio_path,
                          first_audio_ms=list(getattr(audio, "first_audio_ms", [])),
                          first_speech_ms=list(getattr(audio, "first_speech_ms", [])),
                          frames_lost=getattr(getattr(getattr(audio, "conditioner", None), "loss", None), "lost", 0),
                          barge_ins=self.barge_ins())

    def save(self, request: CallRequest) -> None:
        """Write the recording under a name no other call has: the call id (persona-repeat), or
        for a single call the persona and the time; never over an existing file (a call placed
        again on resume, or two `voicelab call`s in one second, keeps both)."""
        folder = Path(request.audio_dir or "recordings")
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")[:-3]
        base = (request.call_id or f"{request.persona.id}-{stamp}").replace("#", "-")
        path, n = folder / f"{base}.wav", 2
        try:
            while path.exists():
                path, n = folder / f"{base}-{n}.wav", n + 1
            self.audio_path = str(self.wav.write(path))
        except OSError as exc:  # a full disk loses the recording, never the call's result
            logging.getLogger(__name__).warning("%s: the recording was not written (%s); the call's result is kept",
                                                path, exc.strerror or exc)
            self.audio_path = None
