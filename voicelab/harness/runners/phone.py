"""`caller: phone`: the platform dials the persona's phone number (Twilio or SIP trunk outbound
call), the conversation is polled until the platform is done with it, then mapped to a CallResult.

Settings: ELEVENLABS_PHONE_NUMBER_ID (the agent's phone number id on the platform; the local
backend takes any), ELEVENLABS_PHONE_PROVIDER = twilio (default) | sip.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from voicelab.harness import hosted, settings
from voicelab.harness.connection import connect, initiation_data
from voicelab.harness.kinds import KINDS
from voicelab.spec.checks import finished_result
from voicelab.spec.errors import BackendError, ConfigError
from voicelab.spec.models import E164_PATTERN, CallRequest, CallResult, EndReason, TranscriptEntry, utc_now_iso
from voicelab.spec.tool_calls import as_records

if TYPE_CHECKING:
    from voicelab.harness.runners.base import Sink

LOCAL_PHONE_NUMBER_ID = "phnum_local"


def phone_settings(request: CallRequest) -> tuple[str, str, str]:
    """(number to dial, agent phone number id, provider), checked before anything is sent."""
    number = request.persona.variables.get("phone_number")
    if not number:
        raise ConfigError(f"persona '{request.persona.id}' has no variables.phone_number to call")
    if not E164_PATTERN.match(number):
        raise ConfigError(f"persona '{request.persona.id}': phone_number {number!r} is not E.164 (+ and digits)")
    phone_id = settings.get("ELEVENLABS_PHONE_NUMBER_ID") or (LOCAL_PHONE_NUMBER_ID if request.backend == "local"
                                                               else None)
    if not phone_id:
        raise ConfigError("ELEVENLABS_PHONE_NUMBER_ID is not set: give the id of the agent's phone number "
                          "(Agents > Phone numbers on the platform)")
    provider = (settings.get("ELEVENLABS_PHONE_PROVIDER", "twilio") or "twilio").lower()
    if provider not in ("twilio", "sip"):
        raise ConfigError(f"ELEVENLABS_PHONE_PROVIDER must be twilio or sip, not {provider!r}")
    return number, phone_id, provider


def end_reason_of(termination: str | None, status: str) -> EndReason:
    text = (termination or "").lower()
    if status == "failed":
        return "error"
    if "end_call" in text or "transfer_to" in text or "agent" in text:  # a transfer is the agent's doing
        return "agent_ended"
    if "maximum duration" in text or "timeout" in text:
        return "timeout"
    return "caller_ended"


def place_phone_call(request: CallRequest, base_url: str | None = None) -> CallResult:
    """Dial, wait for the platform to finish, and return the call as a CallResult (blocking)."""
    number, phone_id, provider = phone_settings(request)
    connection = connect(request, base_url)
    data = initiation_data(request)
    client_data = {"dynamic_variables": data.dynamic_variables}
    if data.conversation_config_override:
        client_data["conversation_config_override"] = data.conversation_config_override
    retries: list[dict] = []
    started = utc_now_iso()
    api = connection.client.conversational_ai
    try:
        if provider == "twilio":
            response = hosted.with_retries(lambda: api.twilio.outbound_call(
                agent_id=connection.agent_id, agent_phone_number_id=phone_id, to_number=number,
                conversation_initiation_client_data=client_data, request_options=hosted.NO_SDK_RETRIES),
                what="placing the outbound call", log=retries)
        else:
            response = hosted.with_retries(lambda: api.sip_trunk.outbound_call(
                agent_id=connection.agent_id, agent_phone_number_id=phone_id, to_number=number,
                conversation_initiation_client_data=client_data, request_options=hosted.NO_SDK_RETRIES),
                what="placing the outbound call", log=retries)
        if not response.success or not response.conversation_id:
            raise BackendError(f"the platform did not place the call: {response.message}")
        conversation = hosted.wait_for_conversation(connection.client, response.conversation_id, retries,
                                                    timeout_s=request.max_duration_s + 60)
    except BackendError as exc:
        return finished_result(request, [], end_reason="error", duration_s=0.0, started_at=started,
                               error=str(exc), retries=retries)
    analysis = hosted.analysis_of(conversation)
    transcript = [TranscriptEntry(speaker=t["role"], text=t["message"] or "", timestamp=t["time_in_call_secs"])
                  for t in analysis.transcript if t["role"] in ("agent", "user")]
    reason = end_reason_of(analysis.termination_reason, conversation.status)
    error = analysis.termination_reason if reason == "error" else None
    duration = float(analysis.call_duration_secs or 0)
    return finished_result(request, transcript, end_reason=reason, duration_s=duration, started_at=started,
                           error=error, conversation_id=conversation.conversation_id, analysis=analysis,
                           retries=retries, tool_calls=as_records(analysis.tool_calls))


class PhoneRunner:
    name = KINDS["phone"].name
    help = KINDS["phone"].help
    modes = KINDS["phone"].modes
    batch = KINDS["phone"].batch
    console = KINDS["phone"].console


    def preflight(self, request: CallRequest) -> None:
        phone_settings(request)
        if request.backend != "local":
            connect(request)

    async def run(self, plan: list[CallRequest], base_url: str | None, concurrency: int, sink: Sink) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(concurrency)

        async def one(request: CallRequest) -> None:
            async with slots:
                if not sink.started(request):
                    return
                await sink.finished(await loop.run_in_executor(None, place_phone_call, request, base_url))

        await asyncio.gather(*(one(r) for r in plan))
