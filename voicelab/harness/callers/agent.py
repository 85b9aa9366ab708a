"""The agent caller: a persona played by a second ElevenLabs conversation (`caller: agent`).

The scripted caller answers by keyword rules, which a real LLM agent's wording soon slips past.
Here the persona becomes a prompt for an agent of its own (the *caller agent*), and the two
conversations are bridged: in text mode each side's `agent_response` is sent to the other as a
`user_message`; in voice mode each side's audio goes to the other every 20 ms (the persona's
synthetic voice pump in audio/synthetic.py carries both directions), so both sides' speech
recognition, turn-taking and barge-in are exercised.

Where the caller agent runs follows the call's backend: on the hosted platform it is the agent
named by ELEVENLABS_CALLER_AGENT_ID, with the persona's prompt sent as an override (its
Security tab must allow `prompt` and `first_message` overrides); on the local backend it is the
built-in agent `voicelab-caller`, which follows the same prompt to the letter: the prompt's
hints are the persona's reply rules, played by the scripted caller (local/caller_agent.py). The
client side is the same code for both.

The prompt and its parser (`caller_prompt`, `parse_caller_prompt`) are in voicelab/spec/prose.py,
the local caller agent's flow (`PersonaFlow`) in voicelab/spec/script.py: the local backend
reads them too, and it does not import the harness. Their names stay importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from elevenlabs.conversational_ai.conversation import ConversationInitiationData

from voicelab.harness import settings
from voicelab.harness.callers import Lifecycle
from voicelab.harness.connection import Connection, connect, describe_disconnect
from voicelab.spec.errors import ConfigError
from voicelab.spec.models import CallerSaid, HangUp, TranscriptEntry
from voicelab.spec.prose import CALLER_AGENT_ID, caller_prompt, parse_caller_prompt
from voicelab.spec.script import Action, PersonaFlow

if TYPE_CHECKING:
    from elevenlabs.conversational_ai.conversation import AsyncConversation, DisconnectionDetails

    from voicelab.audio.synthetic import SyntheticVoice
    from voicelab.spec.models import CallRequest

#: The hosted caller agent's id comes from this setting.
CALLER_AGENT_SETTING = "ELEVENLABS_CALLER_AGENT_ID"

__all__ = ["CALLER_AGENT_ID", "CALLER_AGENT_SETTING", "AgentCaller", "CallerLeg", "PersonaFlow", "caller_initiation",
           "caller_prompt", "connect_caller", "first_words", "parse_caller_prompt"]


def connect_caller(request: CallRequest, base_url: str | None = None) -> Connection:
    """The SDK client for an agent caller's own conversation (`caller: agent`): the local
    backend's built-in caller agent, or the hosted agent ELEVENLABS_CALLER_AGENT_ID names."""
    if request.backend == "local":
        return Connection(connect(request, base_url).client, CALLER_AGENT_ID)
    agent_id = settings.get(CALLER_AGENT_SETTING)
    if not agent_id:
        raise ConfigError("--caller agent on the hosted platform needs a caller agent: create an agent that "
                          "allows 'prompt' and 'first_message' overrides (Security tab) and set "
                          f"{CALLER_AGENT_SETTING} to its id")
    hosted = connect(request, base_url)
    return Connection(hosted.client, agent_id, hosted.requires_auth)


def caller_initiation(request: CallRequest, first_words: str) -> ConversationInitiationData:
    """The caller agent's start: the persona as its prompt (and first words, when it speaks
    first), the persona's language and variables."""
    persona = request.persona
    agent_part: dict[str, Any] = {"prompt": {"prompt": caller_prompt(persona)}, "language": persona.language}
    if first_words:
        agent_part["first_message"] = first_words
    return ConversationInitiationData(dynamic_variables=dict(persona.variables),
                                      conversation_config_override={"agent": agent_part})


def first_words(request: CallRequest) -> str:
    """What the caller agent says first: nothing when the agent under test opens the call (the
    usual case: it greets by name), else a hello, as someone answering the phone would."""
    if request.agent.first_message:
        return ""
    persona = request.persona
    name = persona.variables.get("first_name") or persona.name
    return f"Hallo, hier ist {name}." if persona.language == "de" else f"Hello, this is {name}."


@dataclass
class CallerLeg:
    """The caller conversation's audio interface: what the caller agent says goes into the
    persona's voice (and on to the agent under test); what the agent under test says, 20 ms at a
    time, is sent to the caller agent. Formats other than 16 kHz PCM are converted."""

    voice: SyntheticVoice
    input_format: str = "pcm_16000"
    output_format: str = "pcm_16000"
    send: Callable[[bytes], Awaitable[None]] | None = None

    async def start(self, input_callback: Callable[[bytes], Awaitable[None]]) -> None:
        self.send = input_callback
        self.voice.on_played = self.hear

    async def stop(self) -> None:
        self.voice.on_played = None
        self.send = None

    async def output(self, audio: bytes) -> None:
        from voicelab.audio.formats import to_pcm16k

        self.voice.feed(to_pcm16k(audio, self.output_format))

    async def interrupt(self) -> None:
        self.voice.cut_speech()  # the agent under test talked over the caller agent

    async def hear(self, frame: bytes) -> None:
        from voicelab.audio.formats import from_pcm16k

        if self.send is not None:
            with contextlib.suppress(Exception):  # a caller side that is gone must not stop the call's clock
                await self.send(from_pcm16k(frame, self.input_format))


class AgentCaller(Lifecycle):
    """A live turn policy: the persona's words come from the caller conversation, as events."""

    def __init__(self, request: CallRequest) -> None:
        self.request = request
        self.conversation: AsyncConversation | None = None
        self.conversation_id: str | None = None
        self.entries: list[TranscriptEntry] = []
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._forward: asyncio.Task | None = None
        self._ended = False
        self._clock: Callable[[], float] = lambda: 0.0

    @staticmethod
    def preflight(request: CallRequest) -> None:
        """Hosted: the caller agent's id must be set (ConfigError before anything is placed)."""
        connect_caller(request)

    def check(self, request: CallRequest, base_url: str | None) -> None:
        """The caller agent's settings, checked with the agent under test's before connecting."""
        connect_caller(request, base_url)

    def result_fields(self) -> dict[str, Any]:
        """The caller agent's own conversation, beside the agent under test's."""
        return {"caller_conversation_id": self.conversation_id, "caller_transcript": self.entries}

    def on_agent_turn(self, text: str) -> Action:
        """Text mode: the agent under test's turn goes to the caller agent (voice: its audio does)."""
        if self.request.mode == "text" and not self._ended:
            self._outbox.put_nowait(text)
        return Action()

    def heard(self, text: str, at: float) -> None:
        self.entries.append(TranscriptEntry(speaker="user", text=text, timestamp=round(at, 3)))

    async def start(self, events: asyncio.Queue, clock: Callable[[], float], base_url: str | None,
                    voice: SyntheticVoice | None) -> str | None:
        """Connect the caller conversation; its turns arrive in `events` as CallerSaid, its end as
        HangUp. Returns an error message when it could not start (nothing to bridge then)."""
        from voicelab.harness import sdk
        self._clock = clock
        connection = connect_caller(self.request, base_url)
        leg = CallerLeg(voice) if voice is not None else None

        async def on_response(text: str) -> None:
            at = clock()
            self.entries.append(TranscriptEntry(speaker="agent", text=text, timestamp=round(at, 3)))
            if not self._ended:
                events.put_nowait(CallerSaid(text, at))

        async def on_transcript(text: str) -> None:
            self.heard(text, clock())

        async def on_disconnect(details: DisconnectionDetails) -> None:
            if self._ended:
                return
            self._ended = True
            reason, error = describe_disconnect(details.reason, details.close_code, details.close_reason,
                                                details.message)
            if reason == "agent_ended":  # the caller agent hung up (end_call)
                if voice is not None:  # its last words are still on their way to the agent under test
                    await voice.until_quiet(both=False)
                events.put_nowait(HangUp("caller_ended"))
            else:
                if error and "Override for field" in (details.close_reason or ""):
                    error = (f"the caller agent refused the persona's prompt ({details.close_reason}): allow "
                             f"'prompt' and 'first_message' overrides in the Security tab of the agent "
                             f"{CALLER_AGENT_SETTING} names")
                events.put_nowait(HangUp("error", f"the caller agent's conversation failed: {error}"))

        def on_metadata(event: dict) -> None:
            if leg is not None:
                leg.input_format = str(event.get("user_input_audio_format") or leg.input_format)
                leg.output_format = str(event.get("agent_output_audio_format") or leg.output_format)

        try:
            signed = None
            if connection.requires_auth:
                from voicelab.harness.hosted import signed_ws_url
                signed = await asyncio.get_running_loop().run_in_executor(
                    None, signed_ws_url, connection.client, connection.agent_id, [], None)
            self.conversation = sdk.open_conversation(
                connection.client, connection.agent_id, caller_initiation(self.request, first_words(self.request)),
                audio=leg, on_agent_response=on_response, on_user_transcript=on_transcript,
                on_disconnect=on_disconnect, signed_url=signed, on_metadata=on_metadata)
            await self.conversation.start_session()
            if not await sdk.until_connected(self.conversation):
                return "the caller agent's conversation did not connect"
        except Exception as exc:  # noqa: BLE001 - a caller that cannot start is a failed call
            return f"the caller agent's conversation could not start: {exc}"
        self._forward = asyncio.create_task(self._forward_turns())
        return None

    async def _forward_turns(self) -> None:
        """Text mode: the agent under test's turns, in order, as the caller agent's user messages."""
        assert self.conversation is not None
        while True:
            text = await self._outbox.get()
            with contextlib.suppress(Exception):  # the caller agent hung up meanwhile
                at = self._clock()
                await self.conversation.send_user_message(text)
                self.heard(text, at)

    async def close(self) -> None:
        """End the caller conversation (the call has ended on either side)."""
        from voicelab.harness import sdk

        self._ended = True
        if self._forward is not None:
            self._forward.cancel()
        if self.conversation is not None:
            await sdk.close(self.conversation)
            self.conversation_id = sdk.conversation_id(self.conversation)
