"""`voicelab import-calls`: a backend's recorded conversations become replay personas (the rules:
voicelab/lab/imports.py). Then `voicelab run --personas datasets/personas/imported` replays them
and says, caller turn by caller turn, where the agent now does something else."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DESCRIPTION = """Read an agent's conversations from its backend through the SDK (GET /v1/convai/conversations,
following the cursor to the last page, then GET /v1/convai/conversations/{id} for each) and write
one replay persona per conversation, one file per agent: OUT/<agent>.yaml. Each persona has

  variables   the dynamic variables the call started with (system__ and secret__ ones left out)
  caller      style: replay: the caller's recorded turns in order, each after as many agent turns
              as in the recording; it hangs up where the recorded caller did
  tools       the recorded tool results as mocks, so the agent sees the same world
  expect      agent_calls (the tool calls the agent made), ended_by (who ended the call) and
              recording (the whole recorded path, compared turn by turn when replayed)
  imported    the conversation and the platform's verdicts on it (call_successful, evaluation
              criteria, data collection)
  review      what was inferred from the recording: confirm it before trusting the expectations

Re-importing changes nothing: ids come from the conversation ids, and personas already in a file
are left as they are (reviewed edits stay). --redact replaces personal data: the values of the
named variables, and for phone_number and email those shapes anywhere; the same value gets the
same placeholder in every variable, turn, tool argument and result of the import.

The local backend keeps conversations only while it runs: import from a running `voicelab serve`
with --local-url URL. Without --local-url the hosted platform is read (ELEVENLABS_API_KEY).

exit status: 0 imported (or nothing new); 2 bad input or settings (one line naming the option,
file or conversation and the fix: no API key, an unknown agent or conversation id, a bad time,
an --out file that is no persona file, an imported persona that does not load); 3 internal
failure (one line naming a traceback log)"""

EPILOG = """examples:
  voicelab serve --port 8765 &  voicelab run --local-url http://127.0.0.1:8765 --agent chargeback
  voicelab import-calls --local-url http://127.0.0.1:8765 --agent chargeback
  voicelab run --personas datasets/personas/imported --local-url http://127.0.0.1:8765
  voicelab import-calls --agent chargeback --failed --after 2026-12-01 --redact phone_number email
  voicelab import-calls --local-url URL --ids conv_01abc conv_01def --out /tmp/replays --json"""


def add_parser(sub: Any, fmt: type) -> None:
    p = sub.add_parser("import-calls", help="turn recorded conversations into replay personas",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    p.add_argument("--agent", metavar="ID", help="only this agent spec's conversations (default: every agent spec "
                                                 "the backend's conversations belong to)")
    p.add_argument("--ids", nargs="+", metavar="CONVERSATION_ID", help="these conversations (no listing)")
    p.add_argument("--after", metavar="TIME", help="calls started at or after: unix seconds, 2026-12-01 or "
                                                   "2026-12-01T14:00:00Z (UTC unless a zone is given)")
    p.add_argument("--before", metavar="TIME", help="calls started before this time (same forms)")
    verdict = p.add_mutually_exclusive_group()
    verdict.add_argument("--successful", action="store_true", help="only calls the platform judged successful")
    verdict.add_argument("--failed", action="store_true", help="only calls the platform judged failed")
    p.add_argument("--redact", nargs="+", metavar="KIND", default=[],
                   help="personal data to replace: variable names (phone_number, email, first_name, ...); "
                        "phone_number and email are also found by their shape in any text")
    p.add_argument("--out", default="datasets/personas/imported", metavar="DIR",
                   help="where the persona files go, one per agent (default: %(default)s)")
    p.add_argument("--agents", default="datasets/agents", metavar="DIR",
                   help="folder of agent spec YAML files (default: %(default)s)")
    p.add_argument("--backend", choices=["local", "elevenlabs"], default=None,
                   help="where the conversations are: local (needs --local-url) or elevenlabs (default: local "
                        "with --local-url, else elevenlabs)")
    p.add_argument("--local-url", metavar="URL", default=None,
                   help="read the conversations of a running local backend (`voicelab serve`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print what was imported as JSON")


def cmd_import_calls(args: argparse.Namespace) -> int:
    from voicelab.harness import sdk, settings
    from voicelab.lab.imports import Filters, check_personas, import_conversations, parse_time, platform_agent_ids
    from voicelab.spec.datasets import load_agents
    from voicelab.spec.errors import ConfigError, UsageError

    backend = args.backend or ("local" if args.local_url or settings.get("VOICELAB_LOCAL_URL") else "elevenlabs")
    agents = load_agents(args.agents)
    if args.agent is not None and args.agent not in agents:
        raise UsageError(f"--agent {args.agent}: no such agent spec in {args.agents} (agents: "
                         f"{', '.join(sorted(agents))})")
    after = parse_time(args.after, "--after") if args.after else None
    before = parse_time(args.before, "--before") if args.before else None
    if after is not None and before is not None and after >= before:
        raise UsageError(f"--after {args.after} is not before --before {args.before}: nothing can match")
    for kind in args.redact:
        if not kind.replace("_", "").isalnum():
            raise UsageError(f"--redact {kind!r}: name a variable (letters, digits, _), e.g. phone_number email")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a folder (one persona file per agent goes in it)")
    if backend == "local":
        url = args.local_url or settings.get("VOICELAB_LOCAL_URL")
        if not url:
            raise ConfigError("the local backend keeps conversations only while it runs: start `voicelab serve` "
                              "(and run the calls against it), then pass --local-url URL")
        client = sdk.client(url, None)
    else:
        client = sdk.client(settings.hosted_base_url(), settings.api_key())
    platform_ids = platform_agent_ids(agents, backend, args.agent)
    agent_filter = None
    if args.agent is not None:
        matches = [pid for pid, spec_id in platform_ids.items() if spec_id == args.agent]
        if not matches:
            raise ConfigError(f"agent '{args.agent}' has no hosted agent id: set elevenlabs_agent_id in its agent "
                              "file or ELEVENLABS_AGENT_ID")
        agent_filter = matches[0]
    filters = Filters(agent_id=agent_filter, after=after, before=before,
                      call_successful="success" if args.successful else "failure" if args.failed else None)
    outcome = import_conversations(client, agents, platform_ids=platform_ids, filters=filters, agent=args.agent,
                                   ids=args.ids, out=out, redact=args.redact, progress=not args.no_progress)
    check_personas(out, args.agents)
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2, ensure_ascii=False))
        return 0
    added = sum(len(v) for v in outcome.files.values())
    print(f"{outcome.listed} conversation{'s' if outcome.listed != 1 else ''} read: {added} new persona"
          f"{'s' if added != 1 else ''}, {len(outcome.unchanged)} already imported (unchanged), "
          f"{len(outcome.skipped)} skipped")
    for path, ids in outcome.files.items():
        print(f"  {path}: {len(ids)} added" + (f" ({', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})"
                                               if ids else ""))
    for conversation_id, why in outcome.skipped:
        print(f"  skipped {conversation_id}: {why}")
    if added:
        print(f"replay them: voicelab run --personas {out}" + (f" --local-url {args.local_url}" if args.local_url
                                                                else ""))
    return 0


COMMANDS = {"import-calls": cmd_import_calls}
