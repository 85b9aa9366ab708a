"""The tool tests' world: a dispute desk agent with a client tool, a case desk with webhooks and
system tools, a CRM served on 127.0.0.1, and persona files built per test (fixtures `world`,
`cases`, `crm`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from voicelab.harness.call import Call
from voicelab.spec.datasets import load_dataset

AGENTS = Path(__file__).resolve().parent.parent / "datasets" / "agents"  # as conftest.AGENTS


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
