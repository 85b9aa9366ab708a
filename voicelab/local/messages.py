"""What a client may send once a conversation runs, checked before the session acts on it.

Pure: one decoded frame in, a `Message` (act on it), `IGNORED` or an `Invalid` (close 1008 with
this reason) out. The rules follow the platform's contract (elevenlabs-protocol.md §2.2): a JSON
value that is not an object, and an object whose `type` the server does not know, are ignored
(clients newer than the server must keep working); a known message whose fields have the wrong
types is an `invalid_message`, as production's validation refuses it. The session never sees a
field it has not been promised here, so no client frame can raise inside it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

#: A text frame larger than this is refused (the SDKs send audio chunks of about 11 kB).
MAX_FRAME_BYTES = 1024 * 1024
#: Longest user message or contextual update accepted, in characters.
MAX_TEXT_CHARS = 20_000
#: Deepest nesting of JSON arrays and objects accepted from a client. Python's parser gives up
#: near 1000 levels with a RecursionError, and a value a few hundred deep would still overflow
#: the stack later (storing, echoing, validating it); no message of the protocol goes past ten.
MAX_JSON_DEPTH = 100


class TooDeep(ValueError):
    """JSON nested deeper than MAX_JSON_DEPTH: refused like any other bad JSON."""


def load_json(raw: str | bytes) -> Any:
    """`json.loads`, but a value nested deeper than MAX_JSON_DEPTH raises TooDeep (a ValueError)
    instead of a RecursionError or a value that overflows the stack later."""
    brackets = raw.count("[") + raw.count("{") if isinstance(raw, str) else raw.count(b"[") + raw.count(b"{")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise TooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if brackets > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise TooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (iteratively: no recursion)."""
    todo = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        todo.extend((child, depth + 1) for child in children)
    return False


@dataclass(frozen=True)
class Message:
    type: str
    text: str = ""
    event_id: int | None = None
    score: str | None = None
    pcm: bytes = b""
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Invalid:
    reason: str


IGNORED = None


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(data: dict[str, Any], kind: str, name: str = "text") -> str | Invalid:
    value = data.get(name)
    if not isinstance(value, str):
        return Invalid(f"invalid_message: {kind}.{name} must be a string")
    if len(value) > MAX_TEXT_CHARS:
        return Invalid(f"invalid_message: {kind}.{name} is longer than {MAX_TEXT_CHARS} characters")
    return value


def _optional_str(data: dict[str, Any], kind: str, *names: str) -> Invalid | None:
    for name in names:
        if data.get(name) is not None and not isinstance(data[name], str):
            return Invalid(f"invalid_message: {kind}.{name} must be a string")
    return None


def audio_chunk(value: Any) -> bytes | Invalid:
    """A `user_audio_chunk`: standard base64 of 16-bit PCM."""
    if not isinstance(value, str):
        return Invalid("invalid_message: user_audio_chunk must be a base64 string")
    try:
        pcm = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return Invalid("invalid_message: user_audio_chunk is not valid base64")
    if len(pcm) % 2:
        return Invalid("invalid_message: user_audio_chunk must hold 16-bit PCM (an even number of bytes)")
    return pcm


def parse(raw: str) -> Message | Invalid | None:
    """One text frame from a running conversation."""
    if len(raw) > MAX_FRAME_BYTES:
        return Invalid(f"invalid_message: frame of {len(raw)} bytes is larger than {MAX_FRAME_BYTES}")
    try:
        data = load_json(raw)
    except TooDeep as exc:
        return Invalid(f"invalid_message: {exc}")
    except ValueError:
        return Invalid("invalid_message: not JSON")
    if not isinstance(data, dict):
        return IGNORED
    if "user_audio_chunk" in data and "type" not in data:
        pcm = audio_chunk(data["user_audio_chunk"])
        return pcm if isinstance(pcm, Invalid) else Message("user_audio_chunk", pcm=pcm)
    kind = data.get("type")
    check = CHECKS.get(kind) if isinstance(kind, str) else None
    return check(data) if check is not None else IGNORED


def _optional_text(data: dict[str, Any], kind: str) -> str | Invalid:
    """A message's `text` where the contract makes it optional and nullable (UserMessagePayload:
    "null for text-only mode signal"): absent or null is "" (no caller words)."""
    return "" if data.get("text") is None else _text(data, kind)


def _user_message(data: dict[str, Any]) -> Message | Invalid:
    text = _optional_text(data, "user_message")
    bad = _optional_str(data, "user_message", "rich_content_id")
    return text if isinstance(text, Invalid) else bad or Message("user_message", text=text)


def _contextual_update(data: dict[str, Any]) -> Message | Invalid:
    text = _text(data, "contextual_update")
    bad = _optional_str(data, "contextual_update", "context_id")
    return text if isinstance(text, Invalid) else bad or Message("contextual_update", text=text)


def _pong(data: dict[str, Any]) -> Message | Invalid:
    if not _int(data.get("event_id")):
        return Invalid("invalid_message: pong.event_id must be an integer")
    return Message("pong", event_id=data["event_id"])


def _feedback(data: dict[str, Any]) -> Message | Invalid:
    score = data.get("score")
    if score not in ("like", "dislike", None):
        return Invalid("invalid_message: feedback.score must be 'like', 'dislike' or null")
    if not _int(data.get("event_id")):
        return Invalid("invalid_message: feedback.event_id must be an integer")
    return Message("feedback", score=score, event_id=data["event_id"])


def _client_tool_result(data: dict[str, Any]) -> Message | Invalid:
    if not isinstance(data.get("tool_call_id"), str):
        return Invalid("invalid_message: client_tool_result.tool_call_id must be a string")
    if "is_error" in data and not isinstance(data["is_error"], bool):
        return Invalid("invalid_message: client_tool_result.is_error must be a boolean")
    return Message("client_tool_result", fields={"tool_call_id": data["tool_call_id"], "result": data.get("result"),
                                                 "is_error": bool(data.get("is_error", False))})


def _mcp_approval(data: dict[str, Any]) -> Message | Invalid:
    if not isinstance(data.get("tool_call_id"), str) or not isinstance(data.get("is_approved"), bool):
        return Invalid("invalid_message: mcp_tool_approval_result needs tool_call_id (string) and is_approved "
                       "(boolean)")
    return Message("mcp_tool_approval_result", fields={"tool_call_id": data["tool_call_id"],
                                                       "is_approved": data["is_approved"]})


def _file_ids(data: dict[str, Any]) -> list[str] | Invalid:
    """The file ids of a multimodal message: its `file` (the contract's), and the `files` list
    the Python SDK sends beside it (the first file is in both: counted once)."""
    files = [data.get("file")] + (data["files"] if isinstance(data.get("files"), list) else [data.get("files")])
    ids: list[str] = []
    for part in files:
        if part is None:
            continue
        if not isinstance(part, dict) or not isinstance(part.get("file_id"), str):
            return Invalid("invalid_message: multimodal_message.file must be an object with a string file_id")
        if part["file_id"] not in ids:
            ids.append(part["file_id"])
    return ids


def _multimodal(data: dict[str, Any]) -> Message | Invalid:
    """Text (a user_message, its own text optional) and file references; the session says the
    files are not supported."""
    inner = data.get("text")
    if inner is not None and not isinstance(inner, dict):
        return Invalid("invalid_message: multimodal_message.text must be an object")
    text = _optional_text(inner, "multimodal_message.text") if inner is not None else ""
    if isinstance(text, Invalid):
        return text
    ids = _file_ids(data)
    return ids if isinstance(ids, Invalid) else Message("multimodal_message", text=text, fields={"file_ids": ids})


def _user_activity(data: dict[str, Any]) -> Message:
    return Message("user_activity")


def _second_init(data: dict[str, Any]) -> Invalid:
    return Invalid("invalid_message: conversation_initiation_client_data may only be the first message")


CHECKS = {
    "user_message": _user_message,
    "contextual_update": _contextual_update,
    "user_activity": _user_activity,
    "pong": _pong,
    "feedback": _feedback,
    "client_tool_result": _client_tool_result,
    "mcp_tool_approval_result": _mcp_approval,
    "multimodal_message": _multimodal,
    "conversation_initiation_client_data": _second_init,
}
