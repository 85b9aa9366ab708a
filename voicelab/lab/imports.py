"""From real calls to tests: a backend's conversations become replay personas
(`voicelab import-calls`).

    GET /v1/convai/conversations            (filters; the cursor followed until done)
    GET /v1/convai/conversations/{id}       (transcript, tool calls, variables, verdicts)
      -> one persona per conversation, one file per agent: datasets/personas/imported/<agent>.yaml

Each persona replays its call: the dynamic variables it started with, the caller's turns as a
`replay` caller (spec/script.py), the recorded tool results as the persona's mocks (so the agent
sees the same world), and as expectations the tool calls the agent made (`agent_calls`), how the
call ended (`ended_by`) and the whole recorded path (`recording`, compared turn by turn:
spec/replay.py). The platform's verdicts are kept under `imported:`. A recording shows what
happened, not what should have: every inferred expectation is listed under `review:`.

Re-importing changes nothing: a persona's id comes from its conversation id, and a persona
already in the file is left as it is (a person may have reviewed it). Personal data named with
`redact` is replaced by placeholders, the same value by the same placeholder everywhere in one
import (variables, turns, tool arguments and results, the platform's texts).

Everything but `list_conversations` / `fetch_conversation` (the SDK calls) is a pure function of
the GET bodies, so each rule is tested on its own.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from voicelab.spec.datasets import SECRET_PREFIX, SYSTEM_PREFIX
from voicelab.spec.errors import ConfigError, UsageError
from voicelab.spec.models import TOOL_MOCKS_VARIABLE, AgentSpec
from voicelab.spec.script import says_goodbye
from voicelab.spec.tool_calls import parsed_json

if TYPE_CHECKING:
    from elevenlabs import ElevenLabs

DEFAULT_OUT = Path("datasets/personas/imported")
PAGE_SIZE = 100
#: Tools the agent ends a call with: the end is `ended_by`, not an `agent_calls` line.
ENDING_TOOLS = ("end_call",)
#: More agent turns than the recording had after the caller's last words, before a replay
#: caller gives up waiting for the agent to end the call.
WAIT_SLACK_TURNS = 2
#: The kinds of personal data found by their shape in any text, besides variables of that name.
PATTERNS: dict[str, re.Pattern[str]] = {
    "phone_number": re.compile(r"(?<![\w+])\+[1-9]\d{6,14}(?!\d)"),
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
}
#: Termination reasons that say who ended a call (lowercase fragments); anything else: unknown.
AGENT_ENDED = ("end_call tool was called", "transfer_to_number tool was called", "agent ended", "ended by agent")
CALLER_ENDED = ("client disconnected", "ended by user", "user ended", "remote party", "call ended by the user")


# --------------------------------------------------------------------------- redaction


class Redactor:
    """Consistent placeholders for personal data: the same value gets the same placeholder in
    every text of the import. A placeholder keeps the value's shape where a format needs it (a
    phone number stays E.164, an email an address), so the personas still load and the agent's
    flow still reads them."""

    def __init__(self, kinds: Iterable[str] = ()) -> None:
        self.kinds = list(dict.fromkeys(kinds))
        self.values: dict[str, str] = {}
        self._count: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def _placeholder(self, kind: str) -> str:
        n = self._count[kind] = self._count.get(kind, 0) + 1
        if kind == "phone_number":
            return f"+1555010{n:04d}"  # 555-01xx: numbers reserved for fiction
        if kind == "email":
            return f"redacted-{n}@example.com"
        return f"[{kind} {n}]"

    def learn(self, kind: str, value: str) -> None:
        """Give `value` (a personal datum of `kind`) its placeholder, unless it has one."""
        value = value.strip()
        if value and value not in self.values and value not in self.values.values():
            self.values[value] = self._placeholder(kind)

    def learn_from(self, variables: Mapping[str, str], texts: Iterable[str], agent_text: str = "") -> None:
        """The values to replace in one conversation: its variables named by a kind, then the
        phone numbers and email addresses its texts contain (for those kinds), except those the
        agent spec itself has (`agent_text`: its transfer number is not the caller's data)."""
        for kind in self.kinds:
            if kind in variables:
                self.learn(kind, variables[kind])
        texts = list(texts)
        for kind in self.kinds:
            pattern = PATTERNS.get(kind)
            if pattern is None:
                continue
            for value in [*variables.values(), *texts]:
                for match in pattern.finditer(value):
                    if match.group(0) not in agent_text:
                        self.learn(kind, match.group(0))

    def text(self, text: str) -> str:
        """`text` with every known value replaced (longest first; whole words where the value
        starts or ends with a letter or digit, so "Ann" does not change "Annual")."""
        for value in sorted(self.values, key=len, reverse=True):
            if value not in text:
                continue
            pattern = re.escape(value)
            if value[:1].isalnum():
                pattern = r"(?<!\w)" + pattern
            if value[-1:].isalnum():
                pattern += r"(?!\w)"
            text = re.sub(pattern, lambda _m, v=value: self.values[v], text)
        return text

    def deep(self, value: Any) -> Any:
        """Every string in a JSON-like value redacted (mapping keys kept)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        return value


# --------------------------------------------------------------------------- reading the backend


@dataclass(frozen=True)
class Filters:
    """Which conversations to import (None: no filter)."""

    agent_id: str | None = None
    after: int | None = None
    before: int | None = None
    #: success | failure
    call_successful: str | None = None


def parse_time(text: str, option: str) -> int:
    """`--after` / `--before`: unix seconds, an ISO date (UTC midnight) or an ISO date-time (UTC
    unless it names its zone)."""
    text = text.strip()
    if re.fullmatch(r"\d{9,11}", text):
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a time: give unix seconds, a date (2026-12-01) or a date-time "
                         "(2026-12-01T14:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def list_conversations(client: ElevenLabs, filters: Filters,
                       on_page: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Every conversation the filters select (GET /v1/convai/conversations, following the cursor
    until the last page), newest first as the backend lists them."""
    from voicelab.harness.hosted import NO_SDK_RETRIES, with_retries
    from voicelab.spec.errors import BackendError

    out: list[dict[str, Any]] = []
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        try:
            page = with_retries(lambda c=cursor: client.conversational_ai.conversations.list(
                cursor=c, agent_id=filters.agent_id, call_successful=filters.call_successful,
                call_start_after_unix=filters.after, call_start_before_unix=filters.before, page_size=PAGE_SIZE,
                request_options=NO_SDK_RETRIES), what="listing conversations (GET /v1/convai/conversations)")
        except BackendError as exc:
            raise ConfigError(str(exc)) from None
        items = [c.dict() for c in page.conversations or []]
        out += [c for c in items if c["conversation_id"] not in seen]
        seen.update(c["conversation_id"] for c in items)
        if on_page is not None:
            on_page(len(items))
        if not page.has_more or not page.next_cursor or page.next_cursor == cursor:
            return out
        cursor = page.next_cursor


def fetch_conversation(client: ElevenLabs, conversation_id: str) -> dict[str, Any]:
    """GET /v1/convai/conversations/{id} as a dict; a refusal (an unknown id) is a ConfigError."""
    from voicelab.harness.hosted import NO_SDK_RETRIES, with_retries
    from voicelab.spec.errors import BackendError

    try:
        got = with_retries(lambda: client.conversational_ai.conversations.get(
            conversation_id, request_options=NO_SDK_RETRIES),
            what=f"reading conversation '{conversation_id}' (GET /v1/convai/conversations/{conversation_id})")
    except BackendError as exc:
        if "HTTP 404" in str(exc):  # the generic hint names the agent id; here the id is a conversation's
            raise ConfigError(f"--ids: conversation '{conversation_id}' is not on this backend: check the id (a "
                              "local backend keeps only the conversations it served since it started)") from None
        raise ConfigError(str(exc)) from None
    return got.dict()


# --------------------------------------------------------------------------- a conversation -> a persona


def persona_id(conversation_id: str) -> str:
    """A stable persona id from the conversation id: `call-` and its letters and digits."""
    slug = re.sub(r"[^a-z0-9]+", "-", conversation_id.lower()).strip("-")
    return ("call-" + slug)[:64].rstrip("-")


def ended_by(conversation: Mapping[str, Any]) -> str | None:
    """Who ended the call: agent | caller, or None when the record does not say (a timeout, an
    error, a termination reason this does not know)."""
    meta = conversation.get("metadata") or {}
    reason = str(meta.get("termination_reason") or "").lower()
    if any(k in reason for k in AGENT_ENDED):
        return "agent"
    if any(k in reason for k in CALLER_ENDED) and conversation.get("status") != "failed":
        return "caller"
    for item in reversed(conversation.get("transcript") or []):  # the agent's end_call in the history
        if any(c.get("tool_name") in ENDING_TOOLS for c in item.get("tool_calls") or []):
            return "agent"
    return None


def _start_variables(conversation: Mapping[str, Any]) -> dict[str, str]:
    """The dynamic variables the call started with, without the ones the platform fills itself
    (system__), secrets (never written into a file) and voicelab's own."""
    client_data = conversation.get("conversation_initiation_client_data") or {}
    variables = client_data.get("dynamic_variables") or {}
    return {str(k): "" if v is None else str(v) for k, v in variables.items()
            if not str(k).startswith((SYSTEM_PREFIX, SECRET_PREFIX)) and k != TOOL_MOCKS_VARIABLE}


def _steps(conversation: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The recorded steps (agent / caller words, tool calls) and every tool call with its result."""
    steps: list[dict[str, Any]] = []
    calls: dict[str, dict[str, Any]] = {}
    for item in conversation.get("transcript") or []:
        role, message = item.get("role"), item.get("message")
        for call in item.get("tool_calls") or []:
            args = parsed_json(call.get("params_as_json") or "{}")
            record = {"tool": str(call.get("tool_name")), "args": args if isinstance(args, dict) else {},
                      "type": call.get("type"), "result": None, "is_error": False}
            calls[str(call.get("request_id"))] = record
            steps.append({"tool": record["tool"], **({"args": record["args"]} if record["args"] else {})})
        for result in item.get("tool_results") or []:
            record = calls.get(str(result.get("request_id")))
            if record is not None:
                record.update(result=parsed_json(result.get("result_value")), is_error=bool(result.get("is_error")))
        if message is None or not str(message).strip():
            continue
        steps.append({"agent" if role == "agent" else "caller": str(message).strip()})
    return steps, list(calls.values())


def _caller_turns(steps: list[dict[str, Any]], end: str | None) -> tuple[list[dict[str, Any]], int]:
    """The replay caller's turns (what it said, after how many agent turns) and the agent turns
    after its last words; a caller who ended the call hangs up where it did."""
    turns: list[dict[str, Any]] = []
    heard = 0
    for step in steps:
        if "agent" in step:
            heard += 1
        elif "caller" in step:
            turn: dict[str, Any] = {"say": step["caller"]}
            if heard != 1:
                turn["after"] = heard
            turns.append(turn)
            heard = 0
    if end == "caller":
        if turns and (heard == 0 or says_goodbye(turns[-1]["say"])):
            turns[-1]["hang_up"] = True  # its goodbye was its last word (an agent's reply crossing it aside)
        else:  # it let the agent talk, then hung up without a word
            turns.append({"after": max(heard, 1), "hang_up": True} if heard != 1 else {"hang_up": True})
    return turns, heard


def _language(conversation: Mapping[str, Any], agent: AgentSpec) -> str:
    """The call's language if the agent has words for it, else the agent's own."""
    from voicelab.spec.datasets import agent_languages

    meta = conversation.get("metadata") or {}
    override = ((conversation.get("conversation_initiation_client_data") or {}).get("conversation_config_override")
                or {}).get("agent") or {}
    for spoken in (override.get("language"), meta.get("main_language")):  # what the call was started in first
        if isinstance(spoken, str) and spoken in agent_languages(agent):
            return spoken
    return agent.language


def to_persona(conversation: Mapping[str, Any], agent: AgentSpec, redactor: Redactor | None = None) -> dict[str, Any]:
    """The replay persona of one conversation (GET conversation's body), as it is written."""
    redactor = redactor or Redactor()
    conversation_id = str(conversation["conversation_id"])
    variables = _start_variables(conversation)
    steps, calls = _steps(conversation)
    end = ended_by(conversation)
    meta = conversation.get("metadata") or {}
    analysis = conversation.get("analysis") or {}
    if redactor:
        texts = [s.get("agent") or s.get("caller") or "" for s in steps]
        texts += [json.dumps(c["args"], ensure_ascii=False) for c in calls]
        texts += [json.dumps(c["result"], ensure_ascii=False) for c in calls]
        texts += [str(analysis.get("transcript_summary") or "")]
        redactor.learn_from(variables, texts, agent.model_dump_json())
    turns, last_heard = _caller_turns(steps, end)
    review: list[str] = []
    # mocks: the world the recorded agent saw (each tool's first recorded answer)
    mocks: dict[str, Any] = {}
    for call in calls:
        tool = agent.tool(call["tool"])
        if tool is None or tool.type not in ("client", "webhook") or call["tool"] in mocks:
            continue
        if call["result"] is None and not call["is_error"]:
            continue  # no answer was recorded: the persona's agent file default answers
        mocks[call["tool"]] = {"error": str(call["result"])} if call["is_error"] else {"result": call["result"]}
        answers = {json.dumps(c["result"], sort_keys=True, default=str) for c in calls if c["tool"] == call["tool"]}
        if len(answers) > 1:
            review.append(f"tools.{call['tool']}: the recording answered it {len(answers)} ways; the mock gives the "
                          "first answer to every call")
    if mocks:
        review.append(f"tools: the recorded results of {', '.join(mocks)} answer the replay, so the agent sees the "
                      "world the recorded agent saw; change them to test another")
    expected: list[dict[str, Any]] = []
    for call in calls:
        tool = agent.tool(call["tool"])
        if call["tool"] in ENDING_TOOLS:
            continue
        if tool is None:
            review.append(f"the recording calls {call['tool']}, which agent '{agent.id}' does not declare: "
                          "not expected in agent_calls")
            continue
        args = {k: v for k, v in call["args"].items() if k in tool.parameters} if tool.parameters else {}
        line = {"tool": call["tool"], **({"args": args} if args else {})}
        if line not in expected:
            expected.append(line)
    expect: dict[str, Any] = {}
    if expected:
        expect["agent_calls"] = expected
        review.append("expect.agent_calls: the tool calls the recorded agent made; confirm each is what it should do")
    if end is not None:
        expect["ended_by"] = end
        review.append(f"expect.ended_by: the {end} ended the recorded call; confirm that is how it should end")
    else:
        review.append(f"how the call ended is not known (termination reason: {meta.get('termination_reason')!r}, "
                      f"status {conversation.get('status')!r}): no ended_by expectation")
    expect["recording"] = {"conversation_id": conversation_id, "steps": steps,
                           **({"ended_by": end} if end else {})}
    review.append("expect.recording: the path the recorded agent took; a replay fails where a recorded tool call or "
                  "the recorded end is no longer reached")
    verdict = analysis.get("call_successful")
    judged: dict[str, Any] = {}
    if verdict in ("success", "failure"):
        judged["call_successful"] = verdict
    criteria = {k: v.get("result") for k, v in sorted((analysis.get("evaluation_criteria_results") or {}).items())
                if isinstance(v, dict) and v.get("result") in ("success", "failure")}
    collected = {k: v.get("value") for k, v in sorted((analysis.get("data_collection_results") or {}).items())
                 if isinstance(v, dict) and isinstance(v.get("value"), str | int | float | bool)}
    if criteria:
        judged["evaluation_criteria"] = criteria
    if collected:
        judged["data_collection"] = collected
    if judged:
        expect["platform_verdict"] = judged
        review.append("expect.platform_verdict: the platform's verdicts on the recorded call, checked on the "
                      "replay's own analysis; confirm each is the verdict the call should get")
    if verdict == "failure":
        review.append("the platform judged the recorded call a failure: the recording may be the bug to fix, not "
                      "the behaviour to keep")
    started = meta.get("start_time_unix_secs")
    imported = {
        "conversation_id": conversation_id,
        "agent_id": conversation.get("agent_id"),
        "started_at": (dt.datetime.fromtimestamp(int(started), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                       if started is not None else None),
        "duration_s": meta.get("call_duration_secs"),
        "status": conversation.get("status"),
        "termination_reason": meta.get("termination_reason"),
        "call_successful": verdict,
        "summary": analysis.get("transcript_summary"),
        "evaluation_criteria": {k: {"result": v.get("result"), "rationale": v.get("rationale")}
                                for k, v in sorted((analysis.get("evaluation_criteria_results") or {}).items())},
        "data_collection": {k: {"value": v.get("value"), "rationale": v.get("rationale")}
                            for k, v in sorted((analysis.get("data_collection_results") or {}).items())},
    }
    caller_turns = sum(1 for s in steps if "caller" in s)
    persona: dict[str, Any] = {
        "id": persona_id(conversation_id),
        "name": f"Recorded call {conversation_id}",
        "summary": f"Replays conversation {conversation_id} with agent {agent.id} ({caller_turns} caller turns"
                   + (f", ended by the {end}" if end else "") + ").",
        "language": _language(conversation, agent),
        "agent": agent.id,
        "variables": variables,
        "caller": {"style": "replay", "turns": turns, "hang_up_after_turns": max(1, last_heard + WAIT_SLACK_TURNS)},
        "expect": expect,
        **({"tools": mocks} if mocks else {}),
        "review": review,
        "imported": imported,
    }
    if redactor:
        persona = {**redactor.deep(persona), "id": persona["id"], "agent": persona["agent"]}
        persona["imported"]["conversation_id"] = conversation_id
        persona["expect"]["recording"]["conversation_id"] = conversation_id
        persona["review"].append(f"personal data replaced by placeholders ({', '.join(redactor.kinds)}); exact "
                                 "text only, so check the turns for anything said another way")
    if not persona["variables"]:
        del persona["variables"]
    return persona


# --------------------------------------------------------------------------- writing the files


def render_persona(persona: Mapping[str, Any]) -> str:
    """One persona as the lines of a `personas:` list item, with a comment saying what it is."""
    imported = persona.get("imported") or {}
    head = (f"  # Imported from conversation {imported.get('conversation_id')} "
            f"({imported.get('started_at') or 'start unknown'}; platform verdict: "
            f"{imported.get('call_successful') or 'none'}).\n"
            "  # Inferred from a recording: confirm every `review:` note before trusting its expectations.\n")
    body = yaml.safe_dump([dict(persona)], sort_keys=False, allow_unicode=True, width=110, default_flow_style=False)
    return head + "".join(f"  {line}" if line.strip() else line for line in body.splitlines(keepends=True))


FILE_HEAD = """# Replay personas imported by `voicelab import-calls` from recorded conversations (docs/formats.md,
# "Imported personas"). One persona per conversation; re-importing leaves personas already here as
# they are, so edits made in review are kept.
personas:
"""


def existing_ids(path: Path) -> set[str]:
    """The persona ids already in an imported file (a file that is no persona list is refused)."""
    from voicelab.spec.datasets import _read_yaml
    from voicelab.spec.errors import DatasetError

    raw = _read_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("personas"), list):
        raise DatasetError("is not a persona file (no top-level `personas:` list): import into another --out",
                           file=str(path), field="personas")
    return {str(p.get("id")) for p in raw["personas"] if isinstance(p, dict)}


def write_agent_file(path: Path, personas: Sequence[Mapping[str, Any]]) -> list[str]:
    """Add the personas not yet in `path` (creating it), in the order given; the ids added. The
    file is only appended to, so a person's edits and comments stay."""
    have = existing_ids(path) if path.exists() else set()
    new = [p for p in personas if p["id"] not in have]
    if not new:
        return []
    text = "".join(render_persona(p) for p in new)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(FILE_HEAD + text, encoding="utf-8")
    else:
        old = path.read_text(encoding="utf-8")
        if old.rstrip().endswith("personas: []"):  # an emptied file: a list to append to
            old = old.rstrip()[: -len("[]")].rstrip() + "\n"
        path.write_text(old + ("" if old.endswith("\n") else "\n") + text, encoding="utf-8")
    return [p["id"] for p in new]


@dataclass
class ImportOutcome:
    """What an import did, for the CLI's summary and `--json`."""

    listed: int = 0
    files: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"listed": self.listed, "added": {k: v for k, v in self.files.items()},
                "unchanged": self.unchanged, "skipped": [{"conversation_id": c, "why": w} for c, w in self.skipped]}


def import_conversations(client: ElevenLabs, agents: Mapping[str, AgentSpec], *, platform_ids: Mapping[str, str],
                         filters: Filters, agent: str | None = None, ids: Sequence[str] | None = None,
                         out: Path = DEFAULT_OUT, redact: Sequence[str] = (), progress: bool = True) -> ImportOutcome:
    """List (or take `ids`), fetch and write. `platform_ids` maps the backend's agent ids to agent
    spec ids; `agent` (a spec id) takes every conversation listed for it."""
    from tqdm.auto import tqdm

    outcome = ImportOutcome()
    if ids:
        summaries: list[dict[str, Any]] = [{"conversation_id": i} for i in dict.fromkeys(ids)]
    else:
        with tqdm(desc="listing", unit="conversation", disable=not progress, dynamic_ncols=True) as bar:
            summaries = list_conversations(client, filters, on_page=bar.update)
    outcome.listed = len(summaries)
    fetched: list[dict[str, Any]] = []
    for summary in tqdm(summaries, desc="importing", unit="conversation", disable=not progress, dynamic_ncols=True):
        body = fetch_conversation(client, summary["conversation_id"])
        fetched.append(body)
    # oldest first (then by id): placeholders and the file's order do not depend on the listing's order
    fetched.sort(key=lambda c: ((c.get("metadata") or {}).get("start_time_unix_secs") or 0, c["conversation_id"]))
    redactor = Redactor(redact)
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for body in fetched:
        conversation_id = str(body["conversation_id"])
        mapped = platform_ids.get(str(body.get("agent_id")))
        if agent is not None and mapped is not None and mapped != agent:
            outcome.skipped.append((conversation_id, f"a call of agent '{mapped}', not '{agent}'"))
            continue
        spec_id = agent if agent is not None else mapped
        if spec_id is None or spec_id not in agents:
            outcome.skipped.append((conversation_id, f"no agent spec for agent {body.get('agent_id')} (give --agent, "
                                                     "or set elevenlabs_agent_id in its agent file)"))
            continue
        if body.get("status") not in ("done", "failed"):
            outcome.skipped.append((conversation_id, f"still {body.get('status')}: import it once it has ended"))
            continue
        by_agent.setdefault(spec_id, []).append(to_persona(body, agents[spec_id], redactor))
    for spec_id, personas in by_agent.items():
        path = out / f"{spec_id}.yaml"
        added = write_agent_file(path, personas)
        outcome.files[str(path)] = added
        outcome.unchanged += [p["id"] for p in personas if p["id"] not in added]
    return outcome


def check_personas(out: Path, agents_dir: str | Path) -> None:
    """Load what was written, as `voicelab run --personas OUT` would (a DatasetError names the
    file, persona and field): an import that cannot be replayed is found now."""
    from voicelab.spec.datasets import load_dataset

    if any(out.glob("*.y*ml")):
        load_dataset(out, agents_dir)


def platform_agent_ids(agents: Mapping[str, AgentSpec], backend: str, only: str | None = None) -> dict[str, str]:
    """The backend's agent id of each agent spec, reversed: local ids are spec ids; a hosted
    agent is its spec's elevenlabs_agent_id, or ELEVENLABS_AGENT_ID (as a call uses it) for the
    spec `only` names or the one spec without an id of its own."""
    from voicelab.harness import settings

    if backend == "local":
        return {spec_id: spec_id for spec_id in agents}
    out = {spec.elevenlabs_agent_id: spec_id for spec_id, spec in agents.items() if spec.elevenlabs_agent_id}
    default = settings.get("ELEVENLABS_AGENT_ID")
    without = [spec_id for spec_id, spec in agents.items() if not spec.elevenlabs_agent_id]
    if only is not None and only in without:
        without = [only]
    if default and len(without) == 1:
        out.setdefault(default, without[0])
    return out
