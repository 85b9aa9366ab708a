"""Conversations the local backend served, answered through the SDK's own response types.

Bodies are built by validating into `elevenlabs.types` models and dumping them by alias, so if
the SDK's shapes change, the local backend's answers change with them instead of drifting (the
models load with the first request that needs one: sdk_models.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from voicelab.local.sdk_models import sdk_model


def new_conversation_id() -> str:
    """Production-like id: conv_ plus 28 lowercase base32-ish characters."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"  # 32 letters: a byte modulo 32 is uniform
    return "conv_" + "".join(alphabet[b % 32] for b in secrets.token_bytes(28))  # one urandom read


def error_response(status: int, code: str, message: str) -> Any:
    """The platform's REST error body: {"detail": {"status": ..., "message": ...}}."""
    from aiohttp import web

    return web.json_response({"detail": {"status": code, "message": message}}, status=status)


def dump(model: Any) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def system_variables(conversation_id: str, agent_id: str, phone: Mapping[str, str] | None = None) -> dict[str, str]:
    """The `system__*` dynamic variables the platform fills at conversation start."""
    now = datetime.now(UTC)
    out = {"system__agent_id": agent_id, "system__current_agent_id": agent_id,
           "system__conversation_id": conversation_id, "system__time_utc": now.isoformat(),
           "system__time": now.strftime("%A, %H:%M %d %B %Y"), "system__timezone": "UTC",
           "system__call_duration_secs": "0"}
    if phone:
        out |= {"system__caller_id": phone["agent_number"], "system__called_number": phone["external_number"],
                "system__call_sid": phone["call_sid"]}
    return out


@dataclass
class ConversationRecord:
    conversation_id: str
    agent_id: str
    agent_name: str
    text_only: bool
    dynamic_variables: dict[str, str]
    client_data: dict[str, Any]
    source: str = "python_sdk"
    started: float = field(default_factory=time.time)
    ended: float | None = None
    status: str = "in-progress"
    termination_reason: str | None = None
    error: dict | None = None
    outcome: str | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    contextual_updates: list[str] = field(default_factory=list)
    phone_call: dict | None = None
    #: Set on voice conversations: the audio as it is recorded (local/recording.py).
    recording: Any = None
    #: The transcript index of each agent turn's event id (feedback names the turn by it).
    turn_of_event: dict[int, int] = field(default_factory=dict)
    likes: int = 0
    dislikes: int = 0
    overall_score: str | None = None
    #: The agent's success evaluation criteria (id, conversation goal), judged once it has ended.
    criteria: list[tuple[str, str]] = field(default_factory=list)
    _evaluation: dict[str, Any] | None = None

    def add(self, role: str, message: str, medium: str | None = None, event_id: int | None = None) -> None:
        item: dict[str, Any] = {"role": role, "message": message,
                                "time_in_call_secs": int(time.time() - self.started)}
        if medium:
            item["source_medium"] = medium
        if event_id is not None:
            self.turn_of_event[event_id] = len(self.transcript)
        self.transcript.append(item)

    def tool_call(self, request_id: str, tool: str, kind: str, args: Mapping[str, Any]) -> None:
        """The agent calls a tool: an agent item without words, as the platform stores it."""
        self.transcript.append({"role": "agent", "message": None, "time_in_call_secs": int(time.time() - self.started),
                                "tool_calls": [{"type": kind, "request_id": request_id, "tool_name": tool,
                                                "params_as_json": json.dumps(dict(args)),
                                                "tool_has_been_called": True}]})

    def tool_result(self, request_id: str, tool: str, kind: str, result: Any, is_error: bool,
                    latency_s: float) -> None:
        self.transcript.append({"role": "agent", "message": None, "time_in_call_secs": int(time.time() - self.started),
                                "tool_results": [{"type": kind, "request_id": request_id, "tool_name": tool,
                                                  "result_value": result if isinstance(result, str)
                                                  else json.dumps(result),
                                                  "is_error": is_error, "tool_has_been_called": True,
                                                  "tool_latency_secs": round(latency_s, 3)}]})

    def feedback(self, score: str | None, event_id: int | None = None) -> None:
        """A like or dislike: of one agent turn (the client's `feedback` message), or of the whole
        conversation (the REST route, event_id None). None withdraws it."""
        if event_id is not None:
            index = self.turn_of_event.get(event_id)
            if index is None:
                return  # feedback on a turn that does not exist is ignored, as the platform does
            item = self.transcript[index]
            previous = (item.get("feedback") or {}).get("score")
            if score is None:
                item.pop("feedback", None)
            else:
                item["feedback"] = {"score": score, "time_in_call_secs": int(time.time() - self.started)}
        else:
            previous, self.overall_score = self.overall_score, score
        self.likes += (score == "like") - (previous == "like")
        self.dislikes += (score == "dislike") - (previous == "dislike")

    @property
    def has_audio(self) -> bool:
        return self.recording is not None or self.phone_call is not None

    def finish(self, reason: str, *, failed: bool = False, code: int | None = None) -> None:
        if self.ended is not None:
            return
        self.ended = time.time()
        self.termination_reason = reason
        self.status = "failed" if failed else "done"
        if failed:
            self.error = {"code": code or 1011, "reason": reason}

    def close_audio(self) -> None:
        if self.recording is not None:
            self.recording.close()

    @property
    def duration(self) -> int:
        return int((self.ended or time.time()) - self.started)

    def call_successful(self) -> str:
        if self.status == "in-progress":
            return "unknown"
        return {"success": "success", "failure": "failure"}.get(self.outcome or "", "unknown")

    def analysis(self) -> dict[str, Any]:
        agent_turns = sum(1 for t in self.transcript if t["role"] == "agent" and t["message"] is not None)
        user_turns = sum(1 for t in self.transcript if t["role"] == "user")
        summary = (f"Local {self.agent_name} call: {agent_turns} agent and {user_turns} caller turns; "
                   f"ended: {self.termination_reason or 'in progress'}.")
        out: dict[str, Any] = {"call_successful": self.call_successful(), "transcript_summary": summary}
        if self.criteria and self.status != "in-progress":
            out["evaluation_criteria_results"] = self.evaluation()
        return out

    @property
    def ended_by(self) -> str:
        """Who ended it, as a simulation's judge reads it: agent | caller | limit."""
        reason = self.termination_reason or ""
        if reason.startswith(("end_call", "transfer_to_number")):  # its own end_call or a transfer
            return "agent"
        return "caller" if reason.startswith("Client disconnected") else "limit"

    def evaluation(self) -> dict[str, Any]:
        """Each criterion judged on the finished transcript (once: a record no longer changes),
        with the condition grammar the simulations use; a sentence outside it is `unknown`."""
        if self._evaluation is None:
            from voicelab.local.scenario import judge

            verdicts = judge([goal for _, goal in self.criteria], self.transcript, self.ended_by)
            self._evaluation = {cid: {"criteria_id": cid, "result": v.result, "rationale": v.rationale}
                                for (cid, _), v in zip(self.criteria, verdicts, strict=True)}
        return self._evaluation

    def to_response(self) -> dict:
        body = {
            "agent_id": self.agent_id,
            "agent_name": self.agent_name,
            "conversation_id": self.conversation_id,
            "status": self.status,
            "metadata": {
                "start_time_unix_secs": int(self.started),
                "accepted_time_unix_secs": int(self.started),
                "call_duration_secs": self.duration,
                # a string in the platform's contract: "" until the conversation ends
                "termination_reason": self.termination_reason or "",
                "error": self.error,
                "text_only": self.text_only,
                "main_language": self.client_data.get("language"),
                "conversation_initiation_source": self.source,
                "authorization_method": self.client_data.get("authorization_method", "public"),
                "phone_call": self.phone_call,
                "feedback": {"overall_score": self.overall_score, "likes": self.likes,
                             "dislikes": self.dislikes},
            },
            "has_audio": self.has_audio,
            "has_user_audio": self.has_audio,
            "has_response_audio": self.has_audio,
            "has_auxiliary_audio": False,
            "transcript": self.transcript,
            "analysis": self.analysis(),
            "conversation_initiation_client_data": {
                "dynamic_variables": self.dynamic_variables,
                "conversation_config_override": self.client_data.get("conversation_config_override") or {},
                "source_info": self.client_data.get("source_info") or {},
            },
            "user_message_count": sum(1 for t in self.transcript if t["role"] == "user"),
            "agent_message_count": sum(1 for t in self.transcript if t["role"] == "agent" and t["message"] is not None),
        }
        out = dump(sdk_model("GetConversationResponseModel").model_validate(body))
        # required by the platform's contract, and null: "None when neither [price] is set" (nothing
        # is charged offline); the dump leaves out every None, so it goes back in by hand
        out["metadata"]["cost_fiat"] = None
        return out

    def to_summary_response(self, max_messages: int = 40) -> dict:
        """GET conversation summary: the gist, with the plain chat messages when there are at
        most `max_messages` (tool calls, results and contextual updates left out)."""
        analysis = self.analysis()
        messages = [{"role": t["role"], "message": t["message"]} for t in self.transcript
                    if t.get("message") and t["role"] in ("user", "agent")]
        omitted = len(messages) > max_messages
        body = {
            "conversation_id": self.conversation_id, "agent_id": self.agent_id, "status": self.status,
            "call_summary_title": f"{self.agent_name} call", "transcript_summary": analysis["transcript_summary"],
            "call_successful": analysis["call_successful"], "message_count": len(messages),
            "messages": None if omitted else messages, "messages_omitted": omitted,
            "note": f"For the full transcript with tool calls, GET /v1/convai/conversations/{self.conversation_id}.",
        }
        out = dump(sdk_model("GetConversationSummaryResponseModel").model_validate(body))
        out.setdefault("messages", None)
        return out

    def to_summary(self) -> dict:
        analysis = self.analysis()
        body = {
            "agent_id": self.agent_id,
            "agent_name": self.agent_name,
            "conversation_id": self.conversation_id,
            "start_time_unix_secs": int(self.started),
            "call_duration_secs": self.duration,
            "message_count": sum(1 for t in self.transcript if t["message"] is not None),
            "status": self.status,
            "call_successful": analysis["call_successful"],
            "termination_reason": self.termination_reason or "",
            "transcript_summary": analysis["transcript_summary"],
            "conversation_initiation_source": self.source,
        }
        return dump(sdk_model("ConversationSummaryResponseModel").model_validate(body))


class History:
    """Thread-safe store of served conversations, newest first when listed.

    Bounded: past `limit` conversations the oldest finished ones are dropped (with their audio),
    so a backend serving a long run does not grow without end. Audio lives in files under a
    temporary folder of the backend's own, removed by `close()`.
    """

    def __init__(self, limit: int = 1000) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, ConversationRecord] = {}
        self.limit = limit
        self._audio_dir: Path | None = None

    def audio_path(self, conversation_id: str) -> Path:
        """Where a conversation's recording goes (the folder is made on first use)."""
        with self._lock:
            if self._audio_dir is None:
                self._audio_dir = Path(tempfile.mkdtemp(prefix="voicelab-backend-audio-"))
            return self._audio_dir / conversation_id

    def add(self, record: ConversationRecord) -> None:
        with self._lock:
            self._items[record.conversation_id] = record
            excess = len(self._items) - self.limit
            if excess > 0:  # the oldest finished ones: a scan from the oldest that stops when enough are found
                finished: list[str] = []
                for conversation_id, old in self._items.items():
                    if old.ended is not None:
                        finished.append(conversation_id)
                        if len(finished) == excess:
                            break
                for conversation_id in finished:
                    self._drop(conversation_id)

    def _drop(self, conversation_id: str) -> bool:
        record = self._items.pop(conversation_id, None)
        if record is not None and record.recording is not None:
            record.recording.delete()
        return record is not None

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            return self._drop(conversation_id)

    def get(self, conversation_id: str) -> ConversationRecord | None:
        with self._lock:
            return self._items.get(conversation_id)

    def page(self, *, page_size: int = 30, cursor: str | None = None, agent_id: str | None = None,
             call_successful: str | None = None, after: int | None = None, before: int | None = None,
             min_duration: int | None = None, max_duration: int | None = None) -> dict:
        """One page of the list, newest first; `cursor` is the opaque key of the last item seen."""
        with self._lock:
            items = sorted(self._items.values(), key=lambda r: (r.started, r.conversation_id), reverse=True)
        keep = [r for r in items
                if (not agent_id or r.agent_id == agent_id)
                and (not call_successful or r.call_successful() == call_successful)
                and (after is None or r.started >= after) and (before is None or r.started < before)
                and (min_duration is None or r.duration >= min_duration)
                and (max_duration is None or r.duration <= max_duration)]
        if cursor:
            last = decode_cursor(cursor)
            keep = [r for r in keep if (r.started, r.conversation_id) < last]
        chunk = keep[:page_size]
        has_more = len(keep) > page_size
        body = {
            "conversations": [r.to_summary() for r in chunk],
            "has_more": has_more,
            "next_cursor": encode_cursor(chunk[-1]) if has_more else None,
        }
        return dump(sdk_model("GetConversationsPageResponseModel").model_validate(body))

    def close(self) -> None:
        with self._lock:
            for record in self._items.values():
                record.close_audio()
            if self._audio_dir is not None:
                shutil.rmtree(self._audio_dir, ignore_errors=True)
                self._audio_dir = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def encode_cursor(record: ConversationRecord) -> str:
    key = json.dumps([record.started, record.conversation_id]).encode()
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The key a cursor names; ValueError for one this server did not make."""
    try:
        started, conversation_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(started), str(conversation_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc
