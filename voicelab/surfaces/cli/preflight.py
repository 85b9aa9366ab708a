"""`voicelab preflight`: the agent's settings as the platform has them, against what a run needs
(the rules: voicelab/lab/preflight.py). `voicelab run --backend elevenlabs` runs it first."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DESCRIPTION = """Before anything is placed: read each agent the chosen personas call as the platform has it
(GET /v1/convai/agents/{id} through the SDK: the hosted agent of elevenlabs_agent_id /
ELEVENLABS_AGENT_ID, or the local backend started as `voicelab run` starts it) and tell what would
make the planned run meaningless:

  overrides   overrides the agent file sends (and text_only, which the SDK sends in text mode)
              that Security > Overrides does not allow: every call would be refused at the start
  variables   {{variables}} of the agent's prompt or first message that a persona does not give
              (system__ ones aside): refused calls, or a placeholder's stand-in value
  tools       client tools the agent declares that neither a persona's mock nor the agent file's
              default_mock answers ("Tool '...' is not registered" in every call)
  expected    tools in a persona's expect.agent_calls / agent_never_calls that the agent lacks
              (a check that can never pass, or one that tests nothing)
  language    a language the personas start in or speak that the agent lacks (its language and
              additional languages), or a language override it would refuse
  audio       --mode voice: a text-only agent, or audio formats other than pcm_16000 (the SDK
              always sends and plays 16 kHz PCM); both modes: the agent_response client event

It prints a table: setting, what the run needs, what the agent has, and a verdict (ok, warning,
blocking). Nothing is placed or written.

exit status: 0 nothing blocks (warnings are printed); 2 a blocking finding (one line on stderr
naming the first and its fix), or bad input or settings (no API key, no agent id, unreachable)"""

EPILOG = """examples:
  voicelab preflight                                   # every bundled persona, on the local backend
  voicelab preflight --agent chargeback --mode voice
  ELEVENLABS_API_KEY=... ELEVENLABS_AGENT_ID=agent_... voicelab preflight --backend elevenlabs --agent chargeback
  voicelab preflight --backend elevenlabs --json > preflight.json"""


def add_parser(sub: Any, fmt: type) -> None:
    p = sub.add_parser("preflight", help="check the agent's platform settings against what a run needs",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    p.add_argument("--agent", metavar="ID", help="only personas that call this agent (default: every persona)")
    p.add_argument("--persona", nargs="+", metavar="ID", help="only these personas")
    p.add_argument("--personas", default="datasets/personas", metavar="PATH",
                   help="a persona YAML file or a folder of them (default: %(default)s)")
    p.add_argument("--agents", default="datasets/agents", metavar="DIR",
                   help="folder of agent spec YAML files (default: %(default)s)")
    p.add_argument("--backend", choices=["local", "elevenlabs"], default="local",
                   help="local: a local backend started for the check (default); elevenlabs: the hosted "
                        "platform, needs ELEVENLABS_API_KEY and the agent id")
    p.add_argument("--mode", choices=["text", "voice"], default="text",
                   help="the mode of the planned run: voice adds the audio checks (default: text)")
    p.add_argument("--local-url", metavar="URL", default=None,
                   help="read the agents from an already running local backend (`voicelab serve`)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON instead of the table")


def _planned(args: argparse.Namespace) -> tuple[Any, list[str]]:
    from voicelab.lab.preflight import choose_personas
    from voicelab.spec.datasets import load_dataset
    from voicelab.spec.errors import UsageError

    dataset = load_dataset(args.personas, args.agents)
    chosen = choose_personas(dataset, args.persona, args.agent)
    if not chosen:
        raise UsageError(f"no personas call agent '{args.agent}': check --agent (agents: "
                         f"{', '.join(dataset.agents)})" if args.agent else "no personas to check")
    return dataset, chosen


def cmd_preflight(args: argparse.Namespace) -> int:
    from voicelab.lab.preflight import run_preflight, table

    dataset, chosen = _planned(args)
    result = run_preflight(dataset, chosen, backend=args.backend, mode=args.mode, local_url=args.local_url)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(table(result))
    line = result.summary()
    if line is not None:
        print(f"voicelab: {line}", file=sys.stderr)
        return 2
    return 0


def before_run(args: argparse.Namespace) -> None:
    """`voicelab run --backend elevenlabs`: the preflight first; a blocking finding is a
    ConfigError (one line, exit 2) before the run exists. Warnings are counted on stderr."""
    from voicelab.harness import runners
    from voicelab.lab.preflight import run_preflight
    from voicelab.spec.errors import ConfigError, VoiceLabError

    try:
        dataset, chosen = _planned(args)
    except VoiceLabError:
        return  # the run itself reports bad input, in its own words
    # the settings every call needs (caller and mode, API key, agent id), in the run's own words
    runners.preflight([dataset.request(pid, backend=args.backend, caller=args.caller, mode=args.mode)
                       for pid in chosen])
    result = run_preflight(dataset, chosen, backend=args.backend, mode=args.mode)
    line = result.summary(more=f"listed by `voicelab preflight --backend {args.backend}`")
    if line is not None:
        raise ConfigError(line)
    if result.warnings:
        first = result.warnings[0]
        n = len(result.warnings)
        print(f"voicelab: preflight: {n} warning{'s' if n != 1 else ''} (first: agent '{first.agent}', "
              f"{first.setting}: {first.fix}); `voicelab preflight --backend {args.backend}` shows them all",
              file=sys.stderr)


COMMANDS = {"preflight": cmd_preflight}
