"""Client tools, first slice of the tools issue: an agent spec declares them, the local backend's
flow calls them over the wire as the platform does (`client_tool_call`, then the client's
`client_tool_result`, or a timeout), personas mock them through the SDK's own ClientTools, and
checks say what was called with what."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from elevenlabs import ElevenLabs

from voicelab.harness.call import Call
from voicelab.spec.datasets import load_dataset
from voicelab.spec.errors import ConfigError, DatasetError

from .asserts import assert_check
from .conftest import AGENTS
from .wire import is_agent, open_conversation, read_until, until_closed

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")

AGENT = """
id: disputes
name: Dispute desk
first_message: "Hello {{first_name}}, let me look up your dispute."
prompt: Look the dispute up by phone number, then tell the caller what you found.
tools:
  - name: lookup_dispute
    description: Find the caller's open dispute by phone number.
    parameters:
      phone_number: {type: string, description: "E.164"}
    required: [phone_number]
    response_timeout_s: 1
flow:
  start: lookup
  any:
    - when: ["bye"]
      goto: found
  steps:
    lookup:
      call:
        tool: lookup_dispute
        args: {phone_number: "{{phone_number}}"}
        on_success: found
        on_error: not_found
    found:
      say: "I found your dispute. Goodbye."
      end_call: true
      outcome: success
    not_found:
      say: "I could not find your dispute; a colleague will call you. Goodbye."
      end_call: true
      outcome: failure
"""

PERSONA = """
  - id: {id}
    name: Ann Lee
    agent: disputes
    summary: a cardholder with an open dispute
    variables: {{first_name: Ann, phone_number: "+48512345678"}}
{extra}"""


@pytest.fixture()
def world(tmp_path: Path):
    """Agents (the bundled ones and the dispute desk) and a persona file built per test."""
    agents = tmp_path / "agents"
    shutil.copytree(AGENTS, agents)
    (agents / "disputes.yaml").write_text(AGENT, encoding="utf-8")

    def build(**personas: str):
        path = tmp_path / "personas.yaml"
        path.write_text("personas:" + "".join(PERSONA.format(id=pid, extra=extra) for pid, extra in personas.items()),
                        encoding="utf-8")
        return load_dataset(path, agents)
    return build


def place(dataset, persona_id: str, server) -> object:
    return Call(dataset.request(persona_id, max_duration_s=20), base_url=server.base_url).run()


def client_calls(result) -> list:
    """The client tool calls of a result (every local call also ends with the end_call system tool)."""
    return [c for c in result.tool_calls if c.type == "client"]


def test_get_agent_reports_the_tools_in_the_platforms_shape(world, local_backend):
    dataset = world(ann="")
    server = local_backend(agents=dataset.agents)
    agent = ElevenLabs(base_url=server.base_url, api_key="local").conversational_ai.agents.get("disputes")
    (tool,) = agent.conversation_config.agent.prompt.tools
    assert (tool.type, tool.name, tool.expects_response, tool.response_timeout_secs) == (
        "client", "lookup_dispute", True, 1)
    assert tool.parameters.required == ["phone_number"] and "phone_number" in tool.parameters.properties


def test_a_mocked_tool_answers_and_the_agent_goes_on_with_its_result(world, local_backend):
    dataset = world(ann="""    tools:
      lookup_dispute: {result: {amount: "49.99", merchant: StreamMax}}
    expect:
      agent_says: ["found your dispute"]
      agent_calls:
        - {tool: lookup_dispute, args: {phone_number: "+48512345678"}}
      agent_never_calls: [transfer_to_number]
""")
    result = place(dataset, "ann", local_backend(agents=dataset.agents))
    assert result.success, result.checks
    (call,) = client_calls(result)
    assert call.tool == "lookup_dispute" and call.args == {"phone_number": "+48512345678"}
    assert call.result == {"amount": "49.99", "merchant": "StreamMax"} and not call.is_error
    assert_check(result, "agent_calls", passed=True,
                 detail_starts="lookup_dispute called once with phone_number=+48512345678 at ")


def test_a_failing_tool_an_unmocked_one_and_a_silent_one_take_the_error_branch(world, local_backend):
    dataset = world(
        erring="    tools:\n      lookup_dispute: {error: core banking timeout}\n",
        unmocked="",
        slow="    tools:\n      lookup_dispute: {result: late, delay_ms: 2500}\n")
    server = local_backend(agents=dataset.agents)
    for persona_id, recorded in (("erring", "core banking timeout"), ("unmocked", "not registered"),
                                 ("slow", "late")):
        result = place(dataset, persona_id, server)
        assert "could not find your dispute" in result.transcript[-1].text, (persona_id, result.transcript)
        assert result.end_reason == "agent_ended"
        (call,) = client_calls(result)
        if persona_id == "slow":  # the agent waited its 1 s, carried on and hung up before the answer
            assert call.result is None and call.latency_ms is None
        else:
            assert recorded in str(call.result) and call.is_error


def test_a_check_fails_when_the_agent_calls_the_tool_with_another_argument(world, local_backend):
    dataset = world(ann="""    tools:
      lookup_dispute: {result: found}
    expect:
      agent_calls:
        - {tool: lookup_dispute, args: {phone_number: "+48000000000"}}
""")
    result = place(dataset, "ann", local_backend(agents=dataset.agents))
    assert_check(result, "agent_calls", passed=False,
                 detail="lookup_dispute called, but with phone_number=+48512345678")
    assert not result.success


def test_a_result_for_an_unknown_call_id_is_ignored_and_the_real_one_counts(world, local_backend):
    dataset = world(ann="")
    server = local_backend(agents=dataset.agents)
    first = json.dumps({"type": "conversation_initiation_client_data",
                        "dynamic_variables": {"first_name": "Ann", "phone_number": "+48512345678"}})
    with open_conversation(server.base_url, first, agent_id="disputes") as ws:
        *_, asked = read_until(ws, lambda f: f["type"] == "client_tool_call", answer_tools=False)
        call = asked["client_tool_call"]
        assert call["tool_name"] == "lookup_dispute" and call["parameters"] == {"phone_number": "+48512345678"}
        ws.send(json.dumps({"type": "client_tool_result", "tool_call_id": "toolu_nobody", "result": "x",
                            "is_error": True}))
        ws.send(json.dumps({"type": "client_tool_result", "tool_call_id": call["tool_call_id"],
                            "result": {"amount": "49.99"}, "is_error": False}))
        *_, answer = read_until(ws, is_agent, answer_tools=False)
    assert answer["agent_response_event"]["agent_response"] == "I found your dispute. Goodbye."


@pytest.mark.parametrize(("extra", "words"), [
    ("    tools:\n      open_dispute: {result: ok}\n", "mocks 'open_dispute', which is not a tool of agent 'disputes'"),
    ("    expect:\n      agent_calls: [{tool: refund}]\n", "expects a call of 'refund'"),
    ("    expect:\n      agent_calls: [{tool: lookup_dispute, args: {phone: x}}]\n", "has no parameter 'phone'"),
    ("    expect:\n      agent_never_calls: [teleport]\n", "neither a tool of agent 'disputes' nor a system tool"),
    ("    tools:\n      lookup_dispute: {result: ok, error: down}\n", "a result or an error, not both"),
])
def test_mocks_and_expected_calls_are_validated(world, extra, words):
    with pytest.raises(DatasetError, match=words):
        world(ann=extra)


# --------------------------------------------------------------------------- webhook and system tools

CASES_AGENT = """
id: cases
name: Case desk
first_message: "Hello {{first_name}}. Shall I open a case, or put you through to a person?"
prompt: Open a case in the CRM, or transfer the caller to a person.
platform:
  client_events: [audio, agent_response, user_transcript, interruption, agent_tool_request, agent_tool_response]
tools:
  - name: open_case
    type: webhook
    description: Open a case in the CRM.
    parameters:
      reason: {type: string, enum: [fraud, duplicate]}
    required: [reason]
    response_timeout_s: 1
    webhook:
      url: "{{crm_url}}/cases/{{phone_number}}"
      headers: {X-Caller: "{{first_name}}", Authorization: "Bearer {{secret__crm_token}}"}
  - name: end_call
    type: system
  - name: transfer_to_number
    type: system
    transfers: [{phone_number: "+48223334444", condition: "The caller asks for a person."}]
flow:
  start: ask
  steps:
    ask:
      intents:
        - when: ["fraud"]
          set: {reason: fraud}
          goto: open
        - when: ["twice", "duplicate"]
          set: {reason: duplicate}
          goto: open
        - when: ["person", "human"]
          goto: transfer
    open:
      say: "One moment, I'm opening a case."
      call:
        tool: open_case
        args: {reason: "{{reason}}"}
        save: {case_number: case.number}
        branches:
          - {field: case.status, equals: duplicate, goto: already}
        on_success: opened
        on_error: failed
    opened:
      say: "Your case number is {{case_number}}. Goodbye."
      end_call: true
      outcome: success
    already:
      say: "You already have case {{case_number}} open for this. Goodbye."
      end_call: true
      outcome: success
    failed:
      say: "Our case system is not answering; we'll write to you. Goodbye."
      end_call: true
      outcome: failure
    transfer:
      say: "I'm putting you through to a colleague now."
      call:
        tool: transfer_to_number
        args: {transfer_number: "+48223334444", reason: "caller asked for a person"}
"""

CALLER = """
  - id: {id}
    name: Cas Roe
    agent: cases
    summary: a cardholder who calls about {says}
    variables: {{first_name: Cas, phone_number: "+48512345678", crm_url: "{url}"}}
    caller:
      replies:
        - when: ["open a case"]
          say: "{says}"
{extra}"""


class CRM:
    """A real webhook endpoint: answers by path, remembers every request it got."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.requests: list[dict] = []
        crm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length") or 0)
                crm.requests.append({"path": self.path, "headers": dict(self.headers),
                                     "body": json.loads(self.rfile.read(length) or b"null")})
                if self.path.startswith("/down/"):
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"internal error")
                    return
                if self.path.startswith("/hang/"):
                    import time

                    time.sleep(3)
                body = json.dumps({"case": {"number": "C-1042", "status": "open"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture()
def crm():
    server = CRM()
    yield server
    server.close()


@pytest.fixture()
def cases(tmp_path: Path, crm, monkeypatch):
    """The case desk agent, callers built per test, the CRM token in the environment."""
    monkeypatch.setenv("SECRET__CRM_TOKEN", "tok-123")
    agents = tmp_path / "agents"
    shutil.copytree(AGENTS, agents)
    (agents / "cases.yaml").write_text(CASES_AGENT, encoding="utf-8")

    def build(**callers: tuple[str, str, str]):
        path = tmp_path / "personas.yaml"
        path.write_text("personas:" + "".join(
            CALLER.format(id=pid, says=says, url=crm.url + route, extra=extra)
            for pid, (says, route, extra) in callers.items()), encoding="utf-8")
        return load_dataset(path, agents)
    return build


def test_a_webhook_tool_is_a_real_request_with_variables_and_its_result_feeds_the_flow(cases, crm, local_backend):
    dataset = cases(fraud=("Someone used my card, it's fraud.", "", """    expect:
      agent_says: ["case number is C-1042"]
      agent_calls: [{tool: open_case, args: {reason: fraud}}]
      agent_never_calls: [transfer_to_number]
"""))
    result = place(dataset, "fraud", local_backend(agents=dataset.agents))
    assert result.success, (result.checks, result.transcript)
    (request,) = crm.requests
    assert request["path"] == "/cases/+48512345678" and request["body"] == {"reason": "fraud"}
    assert request["headers"]["X-Caller"] == "Cas" and request["headers"]["Authorization"] == "Bearer tok-123"
    webhook, end = result.tool_calls
    assert (webhook.tool, webhook.type, webhook.args, webhook.is_error) == ("open_case", "webhook",
                                                                            {"reason": "fraud"}, False)
    assert webhook.result == {"case": {"number": "C-1042", "status": "open"}} and webhook.latency_ms is not None
    assert (end.tool, end.type) == ("end_call", "system")
    assert "tok-123" not in result.model_dump_json()  # the secret went to the webhook, and nowhere else


def test_a_webhook_that_answers_500_or_hangs_takes_the_error_branch(cases, crm, local_backend):
    dataset = cases(down=("It's fraud.", "/down", ""), hang=("It's fraud.", "/hang", ""))
    server = local_backend(agents=dataset.agents)
    for persona_id, error in (("down", "HTTP 500 from open_case: internal error"),
                              ("hang", "open_case did not answer within 1 s")):
        result = place(dataset, persona_id, server)
        assert "case system is not answering" in result.transcript[-1].text, result.transcript
        webhook = next(c for c in result.tool_calls if c.tool == "open_case")
        assert webhook.is_error and webhook.result == error, webhook
    assert len(crm.requests) == 2


def test_a_persona_mocks_a_webhook_and_the_backend_branches_on_the_result(cases, crm, local_backend):
    dataset = cases(dup=("I was charged twice.", "", """    tools:
      open_case: {result: {case: {number: C-7, status: duplicate}}}
    expect:
      agent_says: ["already have case C-7"]
      agent_calls: [{tool: open_case, args: {reason: duplicate}}]
"""))
    server = local_backend(agents=dataset.agents)
    result = place(dataset, "dup", server)
    assert result.success, (result.checks, result.transcript)
    assert crm.requests == []  # the mock answered; no request left the backend
    stored = ElevenLabs(base_url=server.base_url, api_key="local").conversational_ai.conversations.get(
        result.conversation_id)
    assert "voicelab__tool_mocks" not in stored.conversation_initiation_client_data.dynamic_variables
    assert "tok-123" not in json.dumps(stored.model_dump(mode="json"))  # nor the secret

    first = json.dumps({"type": "conversation_initiation_client_data", "dynamic_variables": {
        "first_name": "Cas", "phone_number": "+48512345678", "crm_url": "x", "secret__crm_token": "t",
        "voicelab__tool_mocks": "{\"open_case\": {\"result\": 1, \"error\": \"both\"}}"}})
    with open_conversation(server.base_url, first, agent_id="cases") as ws:  # a broken mock variable
        until_closed(ws)  # is refused, not crashed on
    assert ws.close_code == 1008 and "voicelab__tool_mocks" in ws.close_reason


def test_transfer_to_number_ends_the_call_with_the_platforms_reason(cases, local_backend):
    dataset = cases(human=("Can I talk to a person, please?", "", """    expect:
      agent_calls: [{tool: transfer_to_number}]
      agent_never_calls: [open_case]
"""))
    server = local_backend(agents=dataset.agents)
    result = place(dataset, "human", server)
    assert result.success, (result.checks, result.transcript)
    assert result.end_reason == "agent_ended"
    (transfer,) = result.tool_calls
    assert transfer.tool == "transfer_to_number" and transfer.type == "system"
    assert transfer.args == {"transfer_number": "+48223334444", "reason": "caller asked for a person"}
    client = ElevenLabs(base_url=server.base_url, api_key="local")
    history = client.conversational_ai.conversations.get(result.conversation_id)
    assert history.metadata.termination_reason == "transfer_to_number tool was called."
    (call,) = [c for item in history.transcript for c in (item.tool_calls or [])]
    assert call.tool_name == "transfer_to_number" and json.loads(call.params_as_json)["transfer_number"] == \
        "+48223334444"


def test_tool_events_go_out_only_when_the_agents_client_events_allow(cases, local_backend):
    dataset = cases(human=("A person, please.", "", ""))
    quiet = dataset.agents["cases"].model_copy(deep=True)
    quiet.platform.client_events = ["audio", "agent_response", "user_transcript"]
    for agent, expected in ((dataset.agents["cases"], ["agent_tool_request", "agent_tool_response"]), (quiet, [])):
        server = local_backend(agents={"cases": agent})
        first = json.dumps({"type": "conversation_initiation_client_data", "dynamic_variables": {
            "first_name": "Cas", "phone_number": "+48512345678", "crm_url": "http://127.0.0.1:9",
            "secret__crm_token": "t"}})
        with open_conversation(server.base_url, first, agent_id="cases") as ws:
            ws.send(json.dumps({"type": "user_message", "text": "A person, please."}))
            kinds = [frame["type"] for frame in until_closed(ws)]
        assert [k for k in kinds if k.startswith("agent_tool")] == expected, kinds


def test_get_agent_serves_webhook_and_system_tools_in_the_sdks_shapes(cases, local_backend):
    dataset = cases(fraud=("fraud", "", ""))
    server = local_backend(agents=dataset.agents)
    agent = ElevenLabs(base_url=server.base_url, api_key="local").conversational_ai.agents.get("cases")
    webhook, end, transfer = agent.conversation_config.agent.prompt.tools
    assert (webhook.type, webhook.api_schema.url, webhook.api_schema.method) == (
        "webhook", "{{crm_url}}/cases/{{phone_number}}", "POST")
    assert webhook.api_schema.request_body_schema.properties["reason"].enum == ["fraud", "duplicate"]
    assert (end.type, end.params.system_tool_type) == ("system", "end_call")
    assert transfer.params.system_tool_type == "transfer_to_number"
    assert transfer.params.transfers[0].transfer_destination.phone_number == "+48223334444"


def test_a_missing_secret_is_one_clear_line(cases, monkeypatch):
    monkeypatch.delenv("SECRET__CRM_TOKEN")
    dataset = cases(fraud=("fraud", "", ""))
    with pytest.raises(ConfigError, match="SECRET__CRM_TOKEN is not set"):
        Call(dataset.request("fraud"), base_url="http://127.0.0.1:9").run()
    from voicelab.lab.batch import run_batch

    runs = Path(dataset.persona_files["fraud"]).parent / "runs"
    with pytest.raises(ConfigError, match="SECRET__CRM_TOKEN is not set"):  # checked before a run exists
        run_batch(str(dataset.persona_files["fraud"]), str(Path(dataset.persona_files["fraud"]).parent / "agents"),
                  runs_root=str(runs), progress=False)
    assert not runs.exists()


# --------------------------------------------------------------------------- the bundled agents, hosted paths, tables


def test_a_hosted_call_stores_the_platforms_tool_calls_and_agrees_with_them(dataset, local_backend, monkeypatch):
    server = local_backend()
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_local")
    monkeypatch.setenv("ELEVENLABS_BASE_URL", server.base_url)
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    result = Call(dataset.request("piotr-lookup-down", backend="elevenlabs")).run()
    assert result.success, result.checks
    history = result.analysis.tool_calls
    assert [c["tool"] for c in history] == ["lookup_dispute", "lookup_dispute", "transfer_to_number"]
    assert history[0]["args"] == {"phone_number": "+48697123456"} and history[0]["is_error"]
    assert history[0]["result"] == "dispute service unavailable"
    assert result.analysis.tool_calls_differ == []  # what the SDK saw is what the platform stored
    assert result.analysis.termination_reason == "transfer_to_number tool was called."
    assert [c.tool for c in result.tool_calls] == ["lookup_dispute", "lookup_dispute", "transfer_to_number"]
    assert result.tool_calls[2].args["transfer_number"] == "+48223330000"  # from the history


def test_differences_between_the_call_and_the_history_are_named():
    from voicelab.spec.models import ToolCallRecord
    from voicelab.spec.tool_calls import differences

    live = [ToolCallRecord(tool="lookup_dispute", id="t1", args={"phone_number": "+48"}),
            ToolCallRecord(tool="confirm_dispute", id="t2", args={"decision": "keep"})]
    history = [{"id": "t1", "tool": "lookup_dispute", "args": {"phone_number": "+49"}, "is_error": False},
               {"id": "t3", "tool": "transfer_to_number", "args": {}, "is_error": False}]
    said = differences(live, history)
    assert len(said) == 3
    assert "lookup_dispute (t1): the history's arguments" in said[0]
    assert said[1] == "confirm_dispute (t2) was seen during the call but is not in the history"
    assert said[2] == "transfer_to_number (t3) is in the history but was not seen during the call"


def test_the_platforms_simulated_user_gets_the_mocks_and_tool_conditions(tmp_path: Path, local_backend):
    from voicelab.lab.batch import run_batch

    from .conftest import PERSONAS

    backend = local_backend()
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["piotr-lookup-down", "hanna-confirm-fails"],
                        caller="platform", runs_root=str(tmp_path), run_id="pt", progress=False,
                        local_url=backend.base_url)
    tests = {t["name"]: t for t in backend.platform.tests.values()}
    piotr = tests["voicelab/piotr-lookup-down"]
    assert piotr["tool_mock_overrides"]["lookup_dispute"] == [
        {"mock_result": "dispute service unavailable", "is_error": True}]
    assert piotr["tool_mock_overrides"]["confirm_dispute"] == [  # the agent's default mock
        {"mock_result": '{"recorded": true}', "is_error": False}]
    twice = 'The agent calls the tool lookup_dispute with phone_number="+48697123456" 2 times.'
    assert twice in piotr["success_conditions"]
    assert "The agent never calls the tool confirm_dispute." in piotr["success_conditions"]
    for r in outcome.results:  # the platform's judge and voicelab's checks agree, on tools too
        assert r.success and r.analysis.call_successful == "success", (r.persona_id, r.analysis.rationale)
    piotr_result = next(r for r in outcome.results if r.persona_id == "piotr-lookup-down")
    assert [c.tool for c in piotr_result.tool_calls] == ["lookup_dispute", "lookup_dispute", "transfer_to_number"]


def test_the_tools_table_joins_calls_and_turns_and_the_report_shows_them(tmp_path: Path, local_backend):
    from voicelab.lab.batch import run_batch
    from voicelab.lab.tables import load_runs
    from voicelab.report import build as report

    from .conftest import PERSONAS

    backend = local_backend()
    run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge", "hanna-confirm-fails",
                                                       "sven-wrong-person"],
              runs_root=str(tmp_path), run_id="tt", progress=False, local_url=backend.base_url)
    tables = load_runs("tt", root=tmp_path)
    anna = tables.tools[tables.tools["persona_id"] == "anna-double-charge"]
    assert list(anna["tool"]) == ["lookup_dispute", "confirm_dispute", "end_call"]
    looked_up = anna.iloc[0]
    turn = tables.turns[(tables.turns["call_id"] == looked_up["call_id"]) & (tables.turns["turn"] == looked_up["turn"])]
    assert turn.iloc[0]["text"] == "Yes, this is Anna."  # the lookup follows the caller's "yes"
    assert json.loads(looked_up["args"]) == {"phone_number": "+48601234567"}
    summary = tables.tools_summary().set_index("persona_id")
    assert summary.loc["hanna-confirm-fails", "tools_failed"] == "confirm_dispute ×1"
    assert summary.loc["sven-wrong-person", "tools_called"] == "end_call ×1"
    assert "lookup_dispute" in summary.loc["sven-wrong-person", "never_called"]
    assert "transfer_to_number" in summary.loc["anna-double-charge", "never_called"]
    page = report.tools_html(tables) + report.transcripts_html(tables, audio="none")
    assert 'id="vl-tools"' in page and "confirm_dispute ×1" in page
    assert "<b>tool</b> confirm_dispute(phone_number=+48600111222, decision=keep)" in page
    assert "error: &quot;core banking timeout&quot;" in page


def test_tool_call_tests_made_from_the_simulation_judge_the_agents_next_turn(tmp_path: Path, local_backend):
    """Agent-testing's tool-call tests: cut at the caller's turn before each expected call, and at
    every point where a never-called tool could have been called; the local backend replays the
    chat history through the flow and judges the agent's next turn."""
    from voicelab.lab.batch import run_batch

    from .conftest import PERSONAS

    backend = local_backend()
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge", "sven-wrong-person"],
                        caller="platform", runs_root=str(tmp_path), run_id="tu", progress=False,
                        local_url=backend.base_url)
    tool_tests = [t for t in backend.platform.tests.values() if t["type"] == "tool"]
    confirm = next(t for t in tool_tests if t["name"] == "voicelab/anna-double-charge/confirm_dispute-called-6")
    assert confirm["chat_history"][-1] == {"role": "user", "message": "Yes, please go ahead with the dispute.",
                                           "time_in_call_secs": confirm["chat_history"][-1]["time_in_call_secs"]}
    assert confirm["tool_call_parameters"]["parameters"] == [
        {"path": "decision", "eval": {"type": "regex", "pattern": "(?i)^keep$"}}]
    anna = next(r for r in outcome.results if r.persona_id == "anna-double-charge")
    assert [(t.tool, t.expect, t.history_turns, t.status) for t in anna.analysis.tool_tests] == [
        ("lookup_dispute", "called", 2, "passed"), ("confirm_dispute", "called", 6, "passed"),
        ("transfer_to_number", "not_called", 0, "passed"), ("transfer_to_number", "not_called", 2, "passed"),
        ("transfer_to_number", "not_called", 6, "passed"), ("transfer_to_number", "not_called", 10, "passed")]
    assert anna.analysis.tool_tests[1].rationale == "confirm_dispute called (phone_number=+48601234567, decision=keep)"
    sven = next(r for r in outcome.results if r.persona_id == "sven-wrong-person")
    assert {t.tool for t in sven.analysis.tool_tests} == {"lookup_dispute", "confirm_dispute", "transfer_to_number"}
    assert all(t.status == "passed" for t in sven.analysis.tool_tests)
    assert all(r.success and r.analysis.verdict()[0] == "success" for r in outcome.results)


def test_a_tool_call_test_fails_on_the_wrong_argument_or_an_unwanted_call(local_backend):
    """Through the Python SDK, as a user would write them: tool tests the agent must fail."""
    from elevenlabs import ElevenLabs
    from elevenlabs.conversational_ai.tests.types import TestsCreateRequestBody_Tool
    from elevenlabs.types import SingleTestRunRequestModel

    backend = local_backend()
    client = ElevenLabs(api_key="local", base_url=backend.base_url)
    agreed = [{"role": "agent", "message": "Hello, am I speaking with Anna?", "time_in_call_secs": 0},
              {"role": "user", "message": "Yes, this is Anna.", "time_in_call_secs": 3},
              {"role": "agent", "message": None, "time_in_call_secs": 4, "tool_results": [
                  {"tool_name": "lookup_dispute", "request_id": "t1", "is_error": False, "tool_has_been_called": True,
                   "result_value": '{"amount": "49.99", "merchant": "StreamMax"}'}]},
              {"role": "user", "message": "Yes, please go ahead.", "time_in_call_secs": 9}]
    variables = {"first_name": "Anna", "last_name": "Kowalska", "phone_number": "+48601234567",
                 "product_name": "Premium Gym Membership", "chargeback_reason": "double charge"}

    def run(name: str, history: list, parameters: dict) -> tuple[str, str]:
        test = client.conversational_ai.tests.create(request=TestsCreateRequestBody_Tool(
            name=name, chat_history=history, dynamic_variables=variables, tool_call_parameters=parameters))
        invocation = client.conversational_ai.agents.run_tests(
            "chargeback", tests=[SingleTestRunRequestModel(test_id=test.id)])
        while invocation.test_runs[0].status == "pending":
            time.sleep(0.1)
            invocation = client.conversational_ai.tests.invocations.get(invocation.id)
        (run,) = invocation.test_runs
        return run.status, run.condition_result.rationale.summary

    withdraw = {"referenced_tool": {"id": "confirm_dispute", "type": "client"},
                "parameters": [{"path": "decision", "eval": {"type": "exact", "expected_value": "withdraw"}}]}
    assert run("wrong decision", agreed, withdraw) == (
        "failed", "confirm_dispute called (phone_number=+48601234567, decision=keep) but decision='keep', "
                  "expected 'withdraw'")
    keep = {**withdraw, "parameters": [{"path": "decision", "eval": {"type": "regex", "pattern": "^ke+p$"}}]}
    assert run("right decision", agreed, keep)[0] == "passed"
    absent = {"referenced_tool": {"id": "lookup_dispute", "type": "client"}, "verify_absence": True}
    assert run("lookup after yes", agreed[:2], absent) == ("failed", "lookup_dispute was called")
    judged = {**withdraw, "parameters": [{"path": "decision", "eval": {"type": "llm", "description": "keep"}}]}
    status, why = run("llm eval", agreed, judged)
    assert status == "failed" and "needs a model" in why
    with pytest.raises(Exception) as bad:  # a broken regex is refused when the test is created
        run("bad regex", agreed, {**withdraw, "parameters": [{"path": "decision",
                                                              "eval": {"type": "regex", "pattern": "("}}]})
    assert "422" in str(bad.value) and "bad regex" in str(bad.value)


def test_a_failed_tool_call_test_turns_the_platforms_verdict_to_failure():
    from voicelab.spec.models import PlatformTestRun, PlatformToolTest

    run = PlatformTestRun(call_successful="success", rationale="All 5 success conditions met.", tool_tests=[
        PlatformToolTest(tool="confirm_dispute", expect="called", history_turns=6, status="failed",
                         rationale="confirm_dispute not called: the next turn called no tool"),
        PlatformToolTest(tool="transfer_to_number", expect="not_called", history_turns=0, status="passed")])
    verdict, why = run.verdict()
    assert verdict == "failure"
    assert why == ("All 5 success conditions met. Tool-call tests failed: confirm_dispute called after 6 turns: "
                   "confirm_dispute not called: the next turn called no tool")
    assert PlatformTestRun(call_successful="success", tool_tests=run.tool_tests[1:]).verdict()[0] == "success"
