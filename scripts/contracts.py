"""ElevenLabs' published contracts, vendored in contracts/, and the conformance table made from them.

    python scripts/contracts.py refresh [--ref main] [--cli-version X] [--asyncapi FILE]
    python scripts/contracts.py table [RECORDINGS_DIR]      # rewrites the table in docs/conformance.md

`refresh` (what scripts/refresh-contracts.sh runs) takes the AsyncAPI contract of the Agents
websocket from the public repository elevenlabs/packages (packages/types/schemas/agent.asyncapi.yaml;
the npm package @elevenlabs/types ships only the TypeScript generated from it) at `--ref`, or
from a local copy (`--asyncapi`), and the platform's OpenAPI document from the official CLI, whose
binary (npm @elevenlabs/cli-linux-x64, the platform package of @elevenlabs/cli) embeds it and
prints it (`elevenlabs --spec-raw`); of that it keeps the /v1/convai paths and the schemas they
reach. Both go to contracts/, their source and version into contracts/README.md.

`table` reads the recordings the test suite writes (test-artifacts/contracts/*.json, or
$VOICELAB_CONTRACT_RECORDINGS, one per pytest process: tests/contracts.py) and writes the
generated table of docs/conformance.md: every message type of the contract and every /v1/convai
endpoint, seen / validated / not implemented.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts"
ASYNCAPI = CONTRACTS / "agent.asyncapi.yaml"
OPENAPI = CONTRACTS / "convai.openapi.json"
README = CONTRACTS / "README.md"
RECORDINGS = Path(os.environ.get("VOICELAB_CONTRACT_RECORDINGS") or ROOT / "test-artifacts" / "contracts")
CONFORMANCE = ROOT / "docs" / "conformance.md"
REPO = "elevenlabs/packages"
ASYNCAPI_PATH = "packages/types/schemas/agent.asyncapi.yaml"
CLI_PACKAGE = "@elevenlabs/cli-linux-x64"
BEGIN, END = "<!-- contract-table:begin -->", "<!-- contract-table:end -->"
SOURCES_BEGIN, SOURCES_END = "<!-- sources:begin -->", "<!-- sources:end -->"


# ---------------------------------------------------------------------------------------- refresh

def resolve_ref(ref: str) -> str:
    """The commit a branch or tag of the public repository names now."""
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return ref
    out = subprocess.run(["git", "ls-remote", f"https://github.com/{REPO}", ref], check=True,
                         capture_output=True, text=True).stdout.split()
    if not out:
        sys.exit(f"refresh: {REPO} has no ref {ref!r}")
    return out[0]


def refresh_asyncapi(ref: str, local: Path | None, commit: str | None) -> str:
    if local is not None:
        text, commit = local.read_text(), commit or ref
    else:
        commit = resolve_ref(ref)
        url = f"https://raw.githubusercontent.com/{REPO}/{commit}/{ASYNCAPI_PATH}"
        with urllib.request.urlopen(url, timeout=60) as response:
            text = response.read().decode()
    header = (f"# Vendored unchanged below this header from https://github.com/{REPO}/blob/{commit}/{ASYNCAPI_PATH}\n"
              "# (the source of npm @elevenlabs/types). Refresh: scripts/refresh-contracts.sh. Do not edit.\n")
    ASYNCAPI.write_text(header + text)
    return commit


def convai_subset(document: dict) -> dict:
    """The /v1/convai paths and every schema they reach (names the document refers to but does
    not define, e.g. `X-Input`, are kept as references; the validator resolves them to `X`)."""
    schemas = document["components"]["schemas"]
    paths = {p: v for p, v in document["paths"].items() if p.startswith("/v1/convai")}
    needed: set[str] = set()

    def walk(node: object) -> None:
        stack = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                ref = item.get("$ref")
                if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                    name = ref.rsplit("/", 1)[1]
                    name = name if name in schemas else re.sub(r"-(Input|Output)$", "", name)
                    if name not in needed and name in schemas:
                        needed.add(name)
                        stack.append(schemas[name])
                stack.extend(v for k, v in item.items() if k != "$ref")
            elif isinstance(item, list):
                stack.extend(item)

    walk(paths)
    rest = {k: v for k, v in document.items() if k not in ("paths", "components")}
    return {**rest, "paths": paths, "components": {"schemas": {k: schemas[k] for k in sorted(needed)}}}


def refresh_openapi(version: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        name = subprocess.run(["npm", "pack", "--silent", f"{CLI_PACKAGE}@{version}"], cwd=tmp, check=True,
                              capture_output=True, text=True).stdout.split()[-1]
        with tarfile.open(Path(tmp) / name) as tar:
            tar.extractall(tmp, filter="data")
        manifest = json.loads((Path(tmp) / "package" / "package.json").read_text())
        # `--spec-raw`: "the byte-exact embedded source OpenAPI spec" (the CLI's own option)
        raw = subprocess.run([str(Path(tmp) / "package" / "elevenlabs"), "--spec-raw"], check=True,
                             capture_output=True, text=True).stdout
    document = convai_subset(json.loads(raw))
    document["info"]["x-vendored-from"] = f"npm {CLI_PACKAGE}@{manifest['version']}: elevenlabs --spec-raw"
    OPENAPI.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    return manifest["version"]


def write_sources(commit: str, cli_version: str) -> None:
    from datetime import date

    block = (f"{SOURCES_BEGIN}\n"
             f"| file | source | version |\n|---|---|---|\n"
             f"| `agent.asyncapi.yaml` | github.com/{REPO}, `{ASYNCAPI_PATH}` | commit `{commit}` |\n"
             f"| `convai.openapi.json` | npm `{CLI_PACKAGE}` (the binary of `@elevenlabs/cli`): "
             f"`elevenlabs --spec-raw`, `/v1/convai` paths only | `{cli_version}` |\n\n"
             f"Refreshed {date.today().isoformat()} by `scripts/refresh-contracts.sh`.\n{SOURCES_END}")
    text = README.read_text()
    README.write_text(re.sub(re.escape(SOURCES_BEGIN) + ".*?" + re.escape(SOURCES_END), lambda _m: block, text,
                             flags=re.S))


# ------------------------------------------------------------------------------------------ table

#: Why a contract message is never sent (server → client) or not acted on, where the backend lacks it.
MESSAGE_REASONS = {
    "agent_reasoning_response_part": "no reasoning model offline: a scripted flow has no reasoning to stream",
    "rich_content": "no rich content (widgets) in a voicelab agent spec",
    "agent_tool_response_full_payload": "opt-in debug event; `agent_tool_response` carries what clients read",
    "mcp_tool_call": "no MCP servers offline", "mcp_connection_status": "no MCP servers offline",
    "context_usage": "no language model: no context window to report",
    "asr_initiation_metadata": "the ASR is fixed (pcm_16000, pocketsphinx); nothing to negotiate",
    "guardrail_triggered": "no guardrails offline (no model judges the agent's words)",
    "internal_turn_probability": "internal platform event",
    "internal_tentative_agent_response": "internal platform event",
    "agent_typing": "no language model: replies are immediate",
    "external_agent_connected": "no external-agent handover offline",
    "external_agent_disconnected": "no external-agent handover offline",
    "tentative_user_transcript": "voice mode only, when the client asks (`conversation.client_events`)",
    "vad_score": "voice mode only, when the client asks (`conversation.client_events`)",
}

#: Why a /v1/convai endpoint answers 404 (or 405) here, by path prefix (the longest that matches wins).
ENDPOINT_REASONS = {
    "/v1/convai/knowledge-base": "no knowledge base offline (no retrieval, no model)",
    "/v1/convai/agent/{}/knowledge-base": "no knowledge base offline",
    "/v1/convai/agent/{}/llm-usage": "no language model offline",
    "/v1/convai/phone-numbers": "phone numbers are the personas' `phone_number`s in the dataset, not a resource",
    "/v1/convai/batch-calling": "batch calls are `voicelab run`",
    "/v1/convai/mcp-servers": "no MCP servers offline",
    "/v1/convai/secrets": "`secret__*` dynamic variables instead",
    "/v1/convai/environment-variables": "nothing to configure offline: dynamic variables instead",
    "/v1/convai/settings": "workspace settings: nothing to configure offline",
    "/v1/convai/dashboard": "no dashboard offline",
    "/v1/convai/analytics": "no dashboard offline",
    "/v1/convai/llm-usage": "no language model offline",
    "/v1/convai/llm": "no language model offline",
    "/v1/convai/whatsapp": "no WhatsApp offline",
    "/v1/convai/twilio/register-call": "inbound calls are not emulated (outbound calls reach the personas)",
    "/v1/convai/exotel": "no Exotel offline (Twilio and SIP-trunk outbound calls are)",
    "/v1/convai/users": "no workspace users offline",
    "/v1/convai/tags": "no conversation tags offline",
    "/v1/convai/conversations/{}/tags": "no conversation tags offline",
    "/v1/convai/triage-tickets": "no QA tickets offline",
    "/v1/convai/agents/{}/triage-tickets": "no QA tickets offline",
    "/v1/convai/agents/{}/topics": "no topic analysis offline (no model)",
    "/v1/convai/conversations/{}/analysis": "no model to evaluate conversations; the checks are voicelab's",
    "/v1/convai/conversations/messages": "no message search offline; `voicelab.load_runs` tables instead",
    "/v1/convai/conversations/resolve": "no message search offline",
    "/v1/convai/conversations/{}/sip-messages": "no SIP offline",
    "/v1/convai/phone-numbers/{}/sip-messages": "no SIP offline",
    "/v1/convai/conversations/{}/files": "no file store offline (multimodal files are refused)",
    "/v1/convai/agents/{}/widget": "no web widget offline",
    "/v1/convai/agents/{}/avatar": "no web widget offline",
    "/v1/convai/agents/{}/link": "no shareable links offline",
    "/v1/convai/agents/{}/hold-audio": "no hold music offline",
    "/v1/convai/agents/{}/knowledge-base": "no knowledge base offline",
    "/v1/convai/agents/{}/llm-usage": "no language model offline",
    "/v1/convai/agents/{}/branches": "one branch per agent (the main one): creating, merging, rebasing is not",
    "/v1/convai/agents/{}/versions": "no agent versions offline",
    "/v1/convai/agents/{}/deployments": "no deployments offline (one branch)",
    "/v1/convai/agents/{}/drafts": "no drafts offline: PATCH takes effect at once",
    "/v1/convai/agents/{}/simulate-conversation/stream": "its stream format is undocumented",
    "/v1/convai/tools/{}/dependent-agents": "tools are not linked to agents offline",
    "/v1/convai/tools/{}/executions": "no tool execution log offline (the conversation's history has the calls)",
    "/v1/convai/agent-testing/folders": "test folders do not exist offline",
    "/v1/convai/agent-testing/bulk-move": "test folders do not exist offline",
}
#: Single operations answered 405 on purpose.
METHOD_REASONS = {"DELETE /v1/convai/agents/{}": "agents are not deleted (405 JSON)"}


def template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def load_recordings(directory: Path) -> dict:
    """All processes' recordings merged: per message kind and per endpoint, counts and failures."""
    merged: dict = {"ws": defaultdict(lambda: defaultdict(int)), "rest": defaultdict(lambda: defaultdict(int)),
                    "failures": [], "files": 0}
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        merged["files"] += 1
        for section in ("ws", "rest"):
            for key, counts in data[section].items():
                for name, n in counts.items():
                    merged[section][key][name] += n
        merged["failures"].extend(data["failures"])
    return merged


def message_names() -> tuple[list[str], list[str]]:
    """(client → server, server → client) message types of the AsyncAPI contract, in its order."""
    import yaml

    doc = yaml.safe_load(ASYNCAPI.read_text())
    channel = doc["channels"]["AgentMessages"]
    schemas, messages = doc["components"]["schemas"], doc["components"]["messages"]

    def kind(ref: str) -> str:
        payload = schemas[messages[ref.rsplit("/", 1)[1]]["payload"]["$ref"].rsplit("/", 1)[1]]
        props = payload.get("properties", {})
        if "type" in props:
            return props["type"].get("const") or props["type"]["enum"][0]
        return next(iter(payload.get("required", props)))  # user_audio_chunk has no type

    return ([kind(m["$ref"]) for m in channel["subscribe"]["message"]["oneOf"]],
            [kind(m["$ref"]) for m in channel["publish"]["message"]["oneOf"]])


def backend_routes() -> set[str]:
    """`METHOD /path/{}` of every route the local backend serves (its app, not started)."""
    sys.path.insert(0, str(ROOT))
    from voicelab.local.server import LocalBackend

    app = LocalBackend({}).app()
    return {f"{route.method} {template(route.resource.canonical)}" for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"}


def counted(counts: dict, judged: Callable[[str], bool]) -> tuple[str, str, str]:
    """(seen, valid/checked of the judged ones, deviations) as table cells."""
    seen = sum(n for k, n in counts.items() if k != "routed")
    valid = sum(n for k, n in counts.items() if k.endswith(":valid") and judged(k))
    invalid = sum(n for k, n in counts.items() if k.endswith(":invalid") and judged(k))
    deviations = sum(n for k, n in counts.items() if k.endswith(":deviation"))
    checked = valid + invalid
    return (str(seen) if seen else "", f"{valid}/{checked}" if checked else "", str(deviations) if deviations else "")


def table(directory: Path) -> str:
    data = load_recordings(directory)
    if not data["files"]:
        sys.exit(f"table: no recordings in {directory}: run the tests first (scripts/test.sh, or e.g. tests/local)")
    client_kinds, server_kinds = message_names()
    ws, rest = data["ws"], data["rest"]
    intro = (
        f"Generated by `python scripts/contracts.py table` from the recordings that {data['files']} pytest "
        "process(es) wrote (`tests/contracts.py`: a whole run, `scripts/test.sh`, records every conversation and "
        "REST call of the suite, text and voice), checked against `contracts/` (sources and versions: "
        "`contracts/README.md`). *seen*: frames or responses recorded. *valid*: of those judged, how many the "
        "contract's schema accepts; judged are every frame the backend sends, every frame the official clients "
        "send (the Python SDK, the JS client; the raw test clients' frames, malformed on purpose, count in *seen* "
        "only) and every 2xx REST body the document has a schema for. *deviations*: an official client's frames "
        "outside the contract that the backend accepts as the platform does, not counted in *valid* "
        "(`KNOWN_CLIENT_DEVIATIONS` in `tests/contracts.py`: the Python SDK sends a client tool's object result "
        "as an object, where the contract says string). A frame or body that fails fails the test it came from.")
    lines = [BEGIN, "", *textwrap.wrap(intro, 100), "",
             "| direction | message | seen | valid | deviations | status |", "|---|---|---|---|---|---|"]
    official = lambda key: not key.startswith("raw:")  # noqa: E731

    def ws_rows(direction: str, kinds: list[str]) -> None:
        for kind in kinds:
            counts = ws.get(f"{direction} {kind}", {})
            seen, valid, deviations = counted(counts, official if direction.startswith("client") else bool)
            if kind in MESSAGE_REASONS and kind not in ("tentative_user_transcript", "vad_score"):
                status = "not implemented: " + MESSAGE_REASONS[kind]
            else:
                status = "implemented" + ("" if seen else ", not seen in this run")
                if kind in ("tentative_user_transcript", "vad_score"):
                    status += ": " + MESSAGE_REASONS[kind]
            lines.append(f"| {direction} | `{kind}` | {seen} | {valid} | {deviations} | {status} |")

    ws_rows("client → server", client_kinds)
    ws_rows("server → client", server_kinds + (["error"] if "error" not in server_kinds else []))
    routes = backend_routes()
    openapi = json.loads(OPENAPI.read_text())
    lines += ["", "| endpoint | seen | valid (2xx bodies) | status |", "|---|---|---|---|"]
    reasons = sorted(ENDPOINT_REASONS.items(), key=lambda kv: -len(kv[0]))
    for path, operations in openapi["paths"].items():
        for method in ("get", "post", "put", "patch", "delete"):
            if method not in operations:
                continue
            key = f"{method.upper()} {template(path)}"
            seen, valid, _ = counted(rest.get(key, {}), bool)
            if key in routes:
                status = "implemented" + ("" if seen else ", not seen in this run")
            else:
                reason = METHOD_REASONS.get(key) or next(
                    (r for prefix, r in reasons if template(path).startswith(prefix)), "not in a workbench's scope")
                status = f"not implemented: {reason}"
            lines.append(f"| `{method.upper()} {path}` | {seen} | {valid} | {status} |")
    documented = {f"{m.upper()} {template(p)}" for p, ops in openapi["paths"].items() for m in ops}
    extra = sorted(r for r in routes if r not in documented)
    if extra:
        lines += ["", "Served here but not in the document (the websocket itself, aliases the SDKs use, and "
                  "operations of the platform's API the document leaves out): " + ", ".join(f"`{r}`" for r in extra)
                  + "."]
    if data["failures"]:
        lines += ["", "Invalid frames or bodies in this run (first 20):", ""]
        lines += [f"- {f['what']}: {f['error']}" for f in data["failures"][:20]]
    lines += ["", END]
    return "\n".join(lines)


def write_table(directory: Path) -> None:
    generated = table(directory)
    text = CONFORMANCE.read_text()
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: generated, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Against the published contracts (generated)\n\n" + generated + "\n"
    CONFORMANCE.write_text(text)
    print(f"wrote the contract table of {CONFORMANCE.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    refresh = sub.add_parser("refresh", help="vendor the AsyncAPI and OpenAPI contracts into contracts/")
    refresh.add_argument("--ref", default="main", help="branch, tag or commit of elevenlabs/packages")
    refresh.add_argument("--asyncapi", type=Path, help="a local copy of agent.asyncapi.yaml (then --ref names it)")
    import tomllib

    pinned = tomllib.loads((CONTRACTS / "judges.toml").read_text()).get("npm", {}).get(CLI_PACKAGE, "latest")
    refresh.add_argument("--cli-version", default=pinned,
                         help=f"the {CLI_PACKAGE} version to take the OpenAPI from (default: contracts/judges.toml's)")
    gen = sub.add_parser("table", help="write docs/conformance.md's contract table from the test recordings")
    gen.add_argument("recordings", nargs="?", type=Path, default=RECORDINGS)
    args = parser.parse_args()
    if args.command == "refresh":
        commit = refresh_asyncapi(args.ref, args.asyncapi, None)
        version = refresh_openapi(args.cli_version)
        write_sources(commit, version)
        print(f"refreshed contracts/: {REPO}@{commit[:12]}, {CLI_PACKAGE}@{version}")
    else:
        write_table(args.recordings)


if __name__ == "__main__":
    main()
