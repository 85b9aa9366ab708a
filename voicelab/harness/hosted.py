"""REST helpers for the hosted platform (and the local backend, which answers the same calls):
readable errors, visible retries, signed URLs, and the platform's post-call analysis.

The SDK retries 429 and 5xx twice on its own, invisibly; here every REST call is made with the
SDK's retries off and retried by `with_retries`, which writes each retry into the call's log so
the stored CallResult shows it.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from elevenlabs.base_client import BaseElevenLabs
from elevenlabs.core.api_error import ApiError

from voicelab.spec.errors import BackendError, ConfigError
from voicelab.spec.models import PlatformConversation
from voicelab.spec.tool_calls import from_history

T = TypeVar("T")
NO_SDK_RETRIES: dict[str, Any] = {"max_retries": 0}
RETRYABLE = {408, 409, 429}
ATTEMPTS = 4
FINISHED = {"done", "failed"}

HINTS = {
    401: "the API key was refused: check ELEVENLABS_API_KEY (and that it has Agents access)",
    403: "the key may not use this agent or endpoint: check the key's permissions and the agent's workspace",
    404: "not found: check the agent id (elevenlabs_agent_id in the agent file, or ELEVENLABS_AGENT_ID)",
    422: "the platform rejected the request's fields",
    429: "rate or concurrency limit reached: lower --concurrency or try again later",
}


def api_error_text(exc: ApiError, what: str) -> str:
    """One readable line for an ApiError: what failed, the status, the platform's words, the fix."""
    body = exc.body
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, dict):
        said = detail.get("message") or detail.get("status") or str(detail)
    elif isinstance(detail, list):
        said = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    else:
        said = str(detail or "")
    status = exc.status_code or 0
    hint = HINTS.get(status) or ("the platform had an internal error" if status >= 500 else "")
    return f"{what} failed with HTTP {status}" + (f" ({said})" if said else "") + (f": {hint}" if hint else "")


def _wait_s(exc: ApiError, attempt: int) -> float:
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    try:
        return min(10.0, max(0.0, float(headers["retry-after"])))
    except (KeyError, ValueError):
        return 0.5 * 2 ** (attempt - 1)


def with_retries(fn: Callable[[], T], *, what: str, log: list[dict] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `fn`; retry 408/409/429/5xx with backoff (Retry-After wins), logging each retry."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return fn()
        except ApiError as exc:
            status = exc.status_code or 0
            if (status in RETRYABLE or status >= 500) and attempt < ATTEMPTS:
                wait = _wait_s(exc, attempt)
                if log is not None:
                    log.append({"what": what, "status": status, "attempt": attempt, "wait_s": round(wait, 2)})
                sleep(wait)
                continue
            raise BackendError(api_error_text(exc, what)) from None
        except (OSError, httpx.TransportError) as exc:  # the SDK's transport is httpx
            raise BackendError(f"{what} failed: cannot reach the backend ({exc}): check the network and "
                               "ELEVENLABS_BASE_URL") from None
    raise AssertionError("unreachable")


def check_access(client: BaseElevenLabs, agent_id: str) -> None:
    """One cheap authenticated request before a hosted run places anything: the key is accepted
    and the agent exists (ConfigError otherwise), so a wrong key is one line and exit 2, not a
    run of calls that each fail with 401."""
    try:
        with_retries(lambda: client.conversational_ai.agents.get(agent_id, request_options=NO_SDK_RETRIES),
                     what=f"checking the API key and agent '{agent_id}' before placing calls")
    except BackendError as exc:
        raise ConfigError(str(exc)) from None


def signed_ws_url(client: BaseElevenLabs, agent_id: str, log: list[dict], branch_id: str | None = None) -> str:
    """A signed websocket URL for a private agent (or a branch of it: the SDK's Conversation has no
    branch parameter), with the query the SDK itself would add."""
    from elevenlabs.version import __version__

    response = with_retries(
        lambda: client.conversational_ai.conversations.get_signed_url(agent_id=agent_id, branch_id=branch_id,
                                                                      request_options=NO_SDK_RETRIES),
        what="getting a signed URL", log=log)
    parsed = urllib.parse.urlparse(response.signed_url)
    query = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    query += [("source", "python_sdk"), ("version", __version__)]
    return urllib.parse.urlunparse(parsed._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


def wait_for_conversation(client: BaseElevenLabs, conversation_id: str, log: list[dict], *, timeout_s: float = 120,
                          poll_s: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Poll GET /v1/convai/conversations/{id} until the platform has finished with it."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = with_retries(lambda: client.conversational_ai.conversations.get(
            conversation_id, request_options=NO_SDK_RETRIES), what="fetching the conversation", log=log)
        if got.status in FINISHED or time.monotonic() > deadline:
            return got
        sleep(poll_s)


def analysis_of(conversation: Any) -> PlatformConversation:
    """The platform's view of a finished conversation, for the CallResult's `analysis`."""
    meta = conversation.metadata
    analysis = conversation.analysis
    criteria = {}
    collected = {}
    if analysis is not None:
        for key, item in (analysis.evaluation_criteria_results or {}).items():
            criteria[key] = {"result": item.result, "rationale": item.rationale}
        for key, item in (analysis.data_collection_results or {}).items():
            collected[key] = {"value": item.value, "rationale": item.rationale}
    return PlatformConversation.model_validate({
        "status": conversation.status,
        "call_successful": analysis.call_successful if analysis else None,
        "transcript_summary": analysis.transcript_summary if analysis else None,
        "evaluation_criteria_results": criteria,
        "data_collection_results": collected,
        "call_duration_secs": meta.call_duration_secs if meta else None,
        "cost": getattr(meta, "cost", None) if meta else None,
        "termination_reason": getattr(meta, "termination_reason", None) if meta else None,
        "transcript": [{"role": t.role, "message": t.message, "time_in_call_secs": t.time_in_call_secs}
                       for t in conversation.transcript or [] if t.message is not None],
        "tool_calls": from_history(conversation.transcript or []),
    })
