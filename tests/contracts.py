"""The platform's published contracts as judges of every conversation the suite runs.

`contracts/agent.asyncapi.yaml` (the Agents websocket) and `contracts/convai.openapi.json` (REST)
are compiled once per test process. `Recorder` wraps the local backend's websocket (aiohttp's
`WebSocketResponse.prepare / send_str / receive`, for `/v1/convai/conversation` only) and adds a
middleware to every `LocalBackend` app, so every frame the backend sends, every frame a client
sends it, and every REST body it answers with is checked against its schema as it passes, in
every test, text and voice alike; no conversation is run for the purpose.

Whose frames must validate: every frame the backend sends, and every frame an official client
sends: the Python SDK (`websockets`' User-Agent `Python/… websockets/…`) and the JavaScript
client (Node's `ws`: no User-Agent, subprotocol `convai`). The suite's raw clients say so in
their User-Agent (`RAW_CLIENT`, tests/wire.py) or send none at all (hand-made handshakes): their
frames are checked and counted, but may be malformed on purpose. REST: every 2xx JSON body of an
operation the document gives a JSON schema for.

At the end of each test, frames or bodies that failed during it fail the test (conftest.py); at
the end of the process the tallies go to test-artifacts/contracts/<worker>-<pid>.json (or
$VOICELAB_CONTRACT_RECORDINGS), which `python scripts/contracts.py table` turns into
docs/conformance.md's generated table.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7, DRAFT202012

ROOT = Path(__file__).resolve().parent.parent
ASYNCAPI = ROOT / "contracts" / "agent.asyncapi.yaml"
OPENAPI = ROOT / "contracts" / "convai.openapi.json"
#: Where each pytest process writes its tallies; cleared when a run starts, unless
#: VOICELAB_CONTRACT_KEEP=1 (scripts/test.sh's second part adds to its first part's).
RECORDINGS = Path(os.environ.get("VOICELAB_CONTRACT_RECORDINGS") or ROOT / "test-artifacts" / "contracts")
CONVERSATION_PATH = "/v1/convai/conversation"
#: The User-Agent of the suite's own raw websocket clients (frames malformed on purpose).
RAW_CLIENT = "voicelab-tests-raw"
#: Frames an official client sends outside the contract, and the backend accepts as the platform
#: does: (client, message type, field) → why. Counted as deviations, not failures.
KNOWN_CLIENT_DEVIATIONS = {
    ("python-sdk", "client_tool_result", "result"): "the Python SDK sends a client tool's return value as it is "
    "(an object stays an object; the JS client sends it as a JSON string); the contract says string",
}
#: At most this many failures are kept per process (each is reported by the test it happened in).
MAX_FAILURES = 200


def _nullable(node: Any) -> Any:
    """AsyncAPI 2.6 schemas say `nullable: true` (OpenAPI 3.0 style), which JSON Schema does not
    know: turned into a union with null, as the contract means it."""
    if isinstance(node, list):
        return [_nullable(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable(v) for k, v in node.items()}
    if node.pop("nullable", False):
        kind = node.get("type")
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
            if "const" in node:
                node["enum"] = [node.pop("const"), None]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


def _message_kind(payload: dict) -> str:
    props = payload.get("properties", {})
    if "type" in props:
        return props["type"].get("const") or props["type"]["enum"][0]
    return next(iter(payload.get("required", props)))  # user_audio_chunk: no type


@cache
def websocket_validators() -> tuple[dict[str, Draft7Validator], dict[str, Draft7Validator]]:
    """(client → server, server → client): one compiled validator per message type."""
    doc = _nullable(yaml.load(ASYNCAPI.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    registry = Registry().with_resource("urn:asyncapi", Resource(contents=doc, specification=DRAFT7))
    messages = doc["components"]["messages"]
    channel = doc["channels"]["AgentMessages"]

    def compile_(direction: str) -> dict[str, Draft7Validator]:
        out = {}
        for item in channel[direction]["message"]["oneOf"]:
            ref = messages[item["$ref"].rsplit("/", 1)[1]]["payload"]["$ref"]
            payload = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
            out[_message_kind(payload)] = Draft7Validator({"$ref": "urn:asyncapi" + ref}, registry=registry)
        return out

    return compile_("subscribe"), compile_("publish")


def template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


@cache
def rest_validators() -> dict[str, Draft202012Validator]:
    """`METHOD /path/{}/template` → the validator of its 200 (or first 2xx) JSON body."""
    doc = json.loads(OPENAPI.read_text())
    schemas = doc["components"]["schemas"]
    for name in re.findall(r'"#/components/schemas/([^"]+)"', OPENAPI.read_text()):
        if name not in schemas:  # the CLI's document names `X-Input` / `X-Output` it does not define
            schemas[name] = {"$ref": "#/components/schemas/" + re.sub(r"-(Input|Output)$", "", name)}
    registry = Registry().with_resource("urn:openapi", Resource(contents=doc, specification=DRAFT202012))
    out = {}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = sorted(c for c in operation["responses"] if c.startswith("2"))
            for code in codes[:1]:
                schema = operation["responses"][code].get("content", {}).get("application/json", {}).get("schema")
                if schema:
                    pointer = f"/paths/{path.replace('~', '~0').replace('/', '~1')}/{method}/responses/{code}"
                    out[f"{method.upper()} {template(path)}"] = Draft202012Validator(
                        {"$ref": f"urn:openapi#{pointer}/content/application~1json/schema"}, registry=registry)
    return out


def first_error(validator: Any, instance: Any) -> str | None:
    """The most telling error (jsonschema's best_match descends into oneOf/anyOf), or None."""
    try:
        error = best_match(validator.iter_errors(instance))
    except RecursionError:
        return "at (root): nested too deep to validate"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {where}: {error.message[:300]}"


def client_kind(headers: Any) -> str:
    """Which client opened a conversation, from its handshake (see the module docstring)."""
    agent = headers.get("User-Agent", "")
    if RAW_CLIENT in agent:
        return "raw"
    if agent.startswith("Python/") and "websockets/" in agent:
        return "python-sdk"
    if not agent and "convai" in headers.get("Sec-WebSocket-Protocol", ""):
        return "js-client"
    return "raw"


class Recorder:
    """Tallies and failures of one pytest process (see the module docstring)."""

    def __init__(self) -> None:
        self.ws: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.rest: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.failures: list[dict[str, str]] = []
        self.client, self.server = websocket_validators()
        self.bodies = rest_validators()

    def fail(self, what: str, error: str, frame: str) -> None:
        if len(self.failures) < MAX_FAILURES:
            self.failures.append({"what": what, "error": error, "frame": frame[:500]})

    def safely(self, record: Any, *args: Any) -> None:
        """Record without ever breaking the backend: a recorder bug is a failure of the test."""
        try:
            record(*args)
        except Exception as exc:  # noqa: BLE001
            self.fail("the contract recorder", f"{type(exc).__name__}: {exc}", repr(args)[:500])

    def frame(self, direction: str, client: str, text: str) -> None:
        """One websocket text frame: `direction` is "server" (sent by the backend) or "client"."""
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):  # the backend refuses those itself (messages.py)
            obj = None
        if not isinstance(obj, dict):
            kind = "(not a JSON object)"
        elif "user_audio_chunk" in obj and direction == "client":
            kind = "user_audio_chunk"
        else:
            kind = str(obj.get("type"))
        label = f"{'server → client' if direction == 'server' else 'client → server'} {kind}"
        validators = self.server if direction == "server" else self.client
        validator = validators.get(kind) if isinstance(obj, dict) else None
        judged = direction == "server" or client != "raw"
        if validator is None:
            self.ws[label][f"{client}:unchecked"] += 1
            if judged and isinstance(obj, dict) and (direction == "server" and kind != "error"):
                self.fail(f"{label} ({client})", "a message type the contract does not have", text)
            return
        error = first_error(validator, obj)
        known = error is not None and direction == "client" and any(
            c == client and k == kind and error.startswith(f"at {where}:") for c, k, where in KNOWN_CLIENT_DEVIATIONS)
        self.ws[label][f"{client}:{'deviation' if known else 'invalid' if error else 'valid'}"] += 1
        if error and judged and not known:
            self.fail(f"{label} ({client})", error, text)

    def response(self, method: str, route: str | None, path: str, status: int, body: bytes | None) -> None:
        """One REST answer: `route` is the matched route's template (None: no route matched)."""
        key = f"{method} {template(route or path)}"
        tally = self.rest[key]
        if route is not None:
            tally["routed"] += 1
        validator = self.bodies.get(key)
        if route is None or validator is None or not 200 <= status < 300 or body is None:
            tally[f"{status}:unchecked"] += 1
            return
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            tally[f"{status}:unchecked"] += 1
            return
        error = first_error(validator, obj)
        tally[f"{status}:{'invalid' if error else 'valid'}"] += 1
        if error:
            self.fail(f"{key} {status}", error, body.decode(errors="replace"))

    def dump(self, name: str) -> Path:
        RECORDINGS.mkdir(parents=True, exist_ok=True)
        out = RECORDINGS / f"{name}.json"
        out.write_text(json.dumps({"ws": self.ws, "rest": self.rest, "failures": self.failures}, indent=1))
        return out


def install(recorder: Recorder) -> None:
    """Wrap the websocket of `/v1/convai/conversation` and every LocalBackend app (this process)."""
    from aiohttp import WSMsgType, web

    from voicelab.local.server import LocalBackend

    prepare, send_str, receive = web.WebSocketResponse.prepare, web.WebSocketResponse.send_str, \
        web.WebSocketResponse.receive

    async def recording_prepare(self, request):  # noqa: ANN001, ANN202
        if request.path == CONVERSATION_PATH:
            self._voicelab_client = client_kind(request.headers)
        return await prepare(self, request)

    async def recording_send_str(self, data, compress=None):  # noqa: ANN001, ANN202
        client = getattr(self, "_voicelab_client", None)
        if client is not None:
            recorder.safely(recorder.frame, "server", client, data)
        return await send_str(self, data, compress=compress)

    async def recording_receive(self, timeout=None):  # noqa: ANN001, ANN202
        msg = await receive(self, timeout)
        client = getattr(self, "_voicelab_client", None)
        if client is not None and msg.type == WSMsgType.TEXT:
            recorder.safely(recorder.frame, "client", client, msg.data)
        return msg

    web.WebSocketResponse.prepare = recording_prepare
    web.WebSocketResponse.send_str = recording_send_str
    web.WebSocketResponse.receive = recording_receive

    @web.middleware
    async def record_rest(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.path != CONVERSATION_PATH and request.path.startswith("/v1/convai"):
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else None
            body = response.body if isinstance(response, web.Response) and isinstance(response.body, bytes) else None
            recorder.safely(recorder.response, request.method, route, request.path, response.status, body)
        return response

    app = LocalBackend.app

    def recording_app(self):  # noqa: ANN001, ANN202
        application = app(self)
        application.middlewares.insert(0, record_rest)  # outermost: sees the JSON errors too
        return application

    LocalBackend.app = recording_app


def worker_name() -> str:
    """This process's recording file name: one per process, also across pytest runs that add up."""
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}"


def keep_recordings() -> bool:
    return os.environ.get("VOICELAB_CONTRACT_KEEP") == "1"
