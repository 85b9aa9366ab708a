"""Conversations the local backend served, answered through the SDK's own response types.

Bodies are built by validating into `elevenlabs.types` models and dumping them by alias, so if
the SDK's shapes change, the local backend's answers change with them instead of drifting.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from elevenlabs.types import (
    ConversationSummaryResponseModel,
    GetConversationResponseModel,
    GetConversationsPageResponseModel,
)


def new_conversation_id() -> str:
    """Production-like id: conv_ plus 28 lowercase base32-ish characters."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return "conv_" + "".join(secrets.choice(alphabet) for _ in range(28))


def error_response(status: int, code: str, message: str) -> Any:
    """The platform's REST error body: {"detail": {"status": ..., "message": ...}}."""
    from aiohttp import web

    return web.json_response({"detail": {"status": code, "message": message}}, status=status)


def dump(model: Any) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


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

    def add(self, role: str, message: str, medium: str | None = None) -> None:
        item: dict[str, Any] = {"role": role, "message": message,
                                "time_in_call_secs": int(time.time() - self.started)}
        if medium:
            item["source_medium"] = medium
        self.transcript.append(item)

    def finish(self, reason: str, *, failed: bool = False, code: int | None = None) -> None:
        if self.ended is not None:
            return
        self.ended = time.time()
        self.termination_reason = reason
        self.status = "failed" if failed else "done"
        if failed:
            self.error = {"code": code or 1011, "reason": reason}

    @property
    def duration(self) -> int:
        return int((self.ended or time.time()) - self.started)

    def call_successful(self) -> str:
        if self.status == "in-progress":
            return "unknown"
        return {"success": "success", "failure": "failure"}.get(self.outcome or "", "unknown")

    def analysis(self) -> dict[str, Any]:
        agent_turns = sum(1 for t in self.transcript if t["role"] == "agent")
        user_turns = len(self.transcript) - agent_turns
        summary = (f"Local {self.agent_name} call: {agent_turns} agent and {user_turns} caller turns; "
                   f"ended: {self.termination_reason or 'in progress'}.")
        return {"call_successful": self.call_successful(), "transcript_summary": summary}

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
                "termination_reason": self.termination_reason,
                "error": self.error,
                "text_only": self.text_only,
                "main_language": self.client_data.get("language"),
                "conversation_initiation_source": self.source,
                "authorization_method": self.client_data.get("authorization_method", "public"),
                "phone_call": self.phone_call,
            },
            "has_audio": not self.text_only,
            "has_user_audio": not self.text_only,
            "has_response_audio": not self.text_only,
            "has_auxiliary_audio": False,
            "transcript": self.transcript,
            "analysis": self.analysis(),
            "conversation_initiation_client_data": {
                "dynamic_variables": self.dynamic_variables,
                "conversation_config_override": self.client_data.get("conversation_config_override") or {},
                "source_info": self.client_data.get("source_info") or {},
            },
            "user_message_count": sum(1 for t in self.transcript if t["role"] == "user"),
            "agent_message_count": sum(1 for t in self.transcript if t["role"] == "agent"),
        }
        return dump(GetConversationResponseModel.model_validate(body))

    def to_summary(self) -> dict:
        analysis = self.analysis()
        body = {
            "agent_id": self.agent_id,
            "agent_name": self.agent_name,
            "conversation_id": self.conversation_id,
            "start_time_unix_secs": int(self.started),
            "call_duration_secs": self.duration,
            "message_count": len(self.transcript),
            "status": self.status,
            "call_successful": analysis["call_successful"],
            "termination_reason": self.termination_reason,
            "transcript_summary": analysis["transcript_summary"],
            "conversation_initiation_source": self.source,
        }
        return dump(ConversationSummaryResponseModel.model_validate(body))


class History:
    """Thread-safe store of served conversations, newest first when listed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, ConversationRecord] = {}

    def add(self, record: ConversationRecord) -> None:
        with self._lock:
            self._items[record.conversation_id] = record

    def get(self, conversation_id: str) -> ConversationRecord | None:
        with self._lock:
            return self._items.get(conversation_id)

    def page(self, *, agent_id: str | None = None, page_size: int = 30, cursor: str | None = None) -> dict:
        with self._lock:
            items = sorted(self._items.values(), key=lambda r: r.started, reverse=True)
        if agent_id:
            items = [r for r in items if r.agent_id == agent_id]
        start = int(cursor) if cursor and cursor.isdigit() else 0
        chunk = items[start:start + page_size]
        has_more = start + page_size < len(items)
        body = {
            "conversations": [r.to_summary() for r in chunk],
            "has_more": has_more,
            "next_cursor": str(start + page_size) if has_more else None,
        }
        return dump(GetConversationsPageResponseModel.model_validate(body))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
