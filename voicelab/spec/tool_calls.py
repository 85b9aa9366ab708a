"""Tool calls as the two sides saw them: the calling app during the call, the platform in its
conversation history afterwards. Pure functions, so the hosted and the local backend go through
the same code.

During a call voicelab sees a client tool's arguments (its handler runs them) but of webhook and
system tools only `agent_tool_request` / `agent_tool_response` events, which carry no arguments.
The history has every call with its arguments and result; `merge` fills in what the events could
not say, and `differences` names where the two accounts disagree (on the hosted platform they
are stored in the result's `analysis`).
"""

from __future__ import annotations

import json
from typing import Any

from voicelab.spec.models import ToolCallRecord

#: System tools without arguments worth fetching the history for.
NO_ARGUMENTS = ("end_call", "skip_turn")


def parsed_json(text: Any) -> Any:
    """A stored JSON string (`params_as_json`, `result_value`) as its value; text that is not
    JSON, or not a string, as it is (the platform stores both)."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def from_history(transcript: list[Any]) -> list[dict[str, Any]]:
    """The tool calls in a conversation's history transcript (SDK models or plain dicts), in order,
    each with its result when the history has one."""
    def get(item: Any, key: str) -> Any:
        return item.get(key) if isinstance(item, dict) else getattr(item, key, None)

    calls: dict[str, dict[str, Any]] = {}
    for item in transcript:
        for call in get(item, "tool_calls") or []:
            request_id = str(get(call, "request_id"))
            calls[request_id] = {"id": request_id, "tool": get(call, "tool_name"), "type": get(call, "type") or "",
                                 "args": parsed_json(get(call, "params_as_json") or "{}"), "result": None,
                                 "is_error": False, "latency_ms": None,
                                 "at": float(get(item, "time_in_call_secs") or 0)}
        for result in get(item, "tool_results") or []:
            call = calls.get(str(get(result, "request_id")))
            if call is None:
                continue
            latency = get(result, "tool_latency_secs")
            call.update(result=parsed_json(get(result, "result_value")), is_error=bool(get(result, "is_error")),
                        latency_ms=round(latency * 1000, 1) if latency is not None else None)
    return list(calls.values())


def as_records(history: list[dict[str, Any]]) -> list[ToolCallRecord]:
    """History tool calls as a CallResult records them (where nothing was seen live: phone calls,
    agent-testing simulations)."""
    return [ToolCallRecord(tool=h["tool"], type=h["type"] or "system", id=h["id"],
                           args=h["args"] if isinstance(h["args"], dict) else {}, result=h["result"],
                           is_error=h["is_error"], at=h["at"], latency_ms=h["latency_ms"]) for h in history]


def needs_history(live: list[ToolCallRecord]) -> bool:
    """Whether the call made webhook or system tool calls whose arguments only the history has."""
    return any(r.type != "client" and r.tool not in NO_ARGUMENTS for r in live)


def merge(live: list[ToolCallRecord], history: list[dict[str, Any]]) -> list[ToolCallRecord]:
    """The live records with arguments and results of webhook and system calls from the history
    (matched by id; a client tool's record stays what its handler saw), and the history's calls
    the call did not see (an agent whose client events leave out the tool events), in time order."""
    by_id = {h["id"]: h for h in history}
    out = []
    for record in live:
        seen = by_id.get(record.id or "")
        if seen is not None and record.type != "client":
            record = record.model_copy(update={"args": seen["args"] if isinstance(seen["args"], dict) else {},
                                               "result": seen["result"], "is_error": seen["is_error"]})
        out.append(record)
    live_ids = {r.id for r in live}
    out += as_records([h for h in history if h["id"] not in live_ids])
    return sorted(out, key=lambda r: r.at)


def differences(live: list[ToolCallRecord], history: list[dict[str, Any]]) -> list[str]:
    """Where the platform's history and what voicelab saw disagree, one sentence each."""
    out = []
    by_id = {h["id"]: h for h in history}
    live_ids = {r.id for r in live if r.id}
    for record in live:
        seen = by_id.get(record.id or "")
        if seen is None:
            out.append(f"{record.tool} ({record.id or 'no id'}) was seen during the call but is not in the history")
            continue
        if record.type == "client" and _normal(seen["args"]) != _normal(record.args):
            out.append(f"{record.tool} ({record.id}): the history's arguments {seen['args']} differ from those "
                       f"the client tool received {record.args}")
        if seen["is_error"] != record.is_error:
            out.append(f"{record.tool} ({record.id}): the history says is_error={seen['is_error']}, the call saw "
                       f"is_error={record.is_error}")
    for call in history:
        if call["id"] not in live_ids:
            out.append(f"{call['tool']} ({call['id']}) is in the history but was not seen during the call")
    return out


def _normal(args: Any) -> Any:
    return {k: str(v) for k, v in args.items()} if isinstance(args, dict) else args
