"""`voicelab` on the command line: personas, call, run, report, serve, api (and cli_lab's, preflight).

Every VoiceLabError is printed as one readable line and exits with status 2; no tracebacks for
mistakes a user can fix. Anything else is a bug: one line naming a traceback log, exit 3.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
import textwrap
from typing import NoReturn

from voicelab.harness import kinds
from voicelab.lab import heap, signals
from voicelab.spec.errors import UsageError, VoiceLabError
from voicelab.surfaces import crashlog
from voicelab.surfaces.cli import api as cli_api
from voicelab.surfaces.cli import import_calls as cli_import_calls
from voicelab.surfaces.cli import lab as cli_lab
from voicelab.surfaces.cli import preflight as cli_preflight

EPILOG_PERSONAS = """example:
  voicelab personas
  voicelab personas --personas datasets/personas/chargeback.yaml"""
EPILOG_CALL = """examples:
  voicelab call --persona anna-double-charge
  voicelab call --persona jonas-de-entwickler --json > result.json
  ELEVENLABS_API_KEY=... ELEVENLABS_AGENT_ID=... voicelab call --persona anna-double-charge --backend elevenlabs"""
EPILOG_RUN = """examples:
  voicelab run                                   # every persona once, then reports/<run_id>.html
  voicelab run --repeats 3 --concurrency 16 --latency-ms 300
  voicelab run --agent chargeback --run-id nightly-1
  voicelab run --resume nightly-1                # place only the calls without a result yet
  voicelab run --cluster tcp://scheduler:8786    # on a Dask cluster's workers (or --cluster local:4)
  voicelab run --backend elevenlabs --agent chargeback   # preflight of the hosted agent first, then the calls"""
EPILOG_REPORT = """example:
  voicelab report run-20261121-101500            # writes reports/run-20261121-101500.html"""
EPILOG_SERVE = """example:
  voicelab serve --port 8765          # then: ElevenLabs(base_url="http://127.0.0.1:8765")"""


EXIT_CODES_RUN = """exit status (for CI):
  0    every persona reached its pass_threshold (default: every call succeeded), or with --fail-under
       the run's pass rate reached it (personas with their own pass_threshold still count)
  1    a gate failed: calls failed their checks or could not be placed (the reasons are printed)
  2    bad input or settings: nothing was placed (checked first, a hosted API key included; with
       --backend elevenlabs also a blocking `voicelab preflight` finding); or the
       run store cannot be written (read-only, full disk): the line names the path and the fix, and
       every finished result is kept; or a --cluster that cannot be used (unreachable, no Dask)
  3    an internal failure: one line naming a traceback log
  130  interrupted by Ctrl+C (143 SIGTERM, 129 SIGHUP): what finished is stored; --resume continues"""


#: `run` options that define a run, so they cannot be given with --resume.
RUN_SETTINGS = ("personas", "agents", "persona", "agent", "repeats", "concurrency", "mode", "caller", "backend",
                "latency_ms", "max_duration", "run_id")


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake reported as one line (not the usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def number(kind: type, low: float | None = None, high: float | None = None, *, above: bool = False):  # noqa: ANN201
    """An argparse type: an int or float within [low, high] (or above `low` when `above`)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") \
                from None
        if value != value or (low is not None and (value <= low if above else value < low)) or \
                (high is not None and value > high):
            bound = (f"more than {low:g}" if above else f"at least {low:g}") if high is None else f"{low:g}..{high:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {bound}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def run_id(text: str) -> str:
    from voicelab.lab.store import run_id_problem

    problem = run_id_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def rate(text: str) -> float:
    """--fail-under: a share, 0.9 or 90%."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate: give a share such as 0.9 or 90%") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is outside 0..1 (0%..100%)")
    return value


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--personas", default="datasets/personas", metavar="PATH",
                   help="a persona YAML file or a folder of them (default: %(default)s)")
    p.add_argument("--agents", default="datasets/agents", metavar="DIR",
                   help="folder of agent spec YAML files (default: %(default)s)")


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["local", "elevenlabs"], default="local",
                   help="local: the embedded offline backend (default); elevenlabs: the hosted platform, "
                        "needs ELEVENLABS_API_KEY in the environment or .env")
    p.add_argument("--latency-ms", type=number(float, 0), default=0.0, metavar="MS",
                   help="local backend only: the agent's response time, from the end of the caller's turn "
                        "to its answer (default: 0)")
    p.add_argument("--max-duration", type=number(float, 0, above=True), default=60.0, metavar="S",
                   help="end a call with end_reason timeout after this many seconds, unless the persona "
                        "sets caller.timeout_s; never before the persona's expect.max_duration_s "
                        "(default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="voicelab",
        description="Test ElevenLabs voice agents with personas: single calls, batches and reports. "
                    "Runs offline against an embedded ElevenLabs-compatible backend by default.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("personas", help="list and validate personas", epilog=EPILOG_PERSONAS,
                       formatter_class=fmt,
                       description="Load every persona and agent file, check them against each other, "
                                   "and list the personas.\n\nexit status: 0 all valid; 2 the first problem, "
                                   "one line naming the file, persona or agent, field and fix")
    _add_dataset_args(p)

    p = sub.add_parser("call", help="place one call and print its transcript and verdict", epilog=EPILOG_CALL,
                       formatter_class=fmt,
                       description="Place one call from a persona to its agent (played by the scripted caller "
                                   "unless --caller says otherwise), then print the transcript, checks and verdict. "
                                   "Exit status: 0 the call passed its checks, 1 it did not, 2 bad input or "
                                   "settings, 130 interrupted.")
    p.add_argument("--persona", required=True, metavar="ID", help="persona id (see `voicelab personas`)")
    _add_dataset_args(p)
    _add_backend_args(p)
    p.add_argument("--mode", choices=["text", "voice"], default="text",
                   help="text messages, or voice: the persona speaks in real time (espeak-ng) and the call is "
                        "recorded as a stereo WAV in --recordings (default: text)")
    p.add_argument("--caller", choices=list(kinds.KINDS), default="scripted",
                   help="who plays the persona: " + "; ".join(f"{n}: {k.help}" for n, k in kinds.KINDS.items())
                   + ". A human call is stored in runs/console-*/ like a console call")
    p.add_argument("--input-device", metavar="NAME_OR_INDEX", help="microphone for --caller human (default: system)")
    p.add_argument("--output-device", metavar="NAME_OR_INDEX", help="speaker for --caller human (default: system)")
    p.add_argument("--recordings", default="recordings", metavar="DIR",
                   help="where voice calls write their WAV (default: %(default)s)")
    p.add_argument("--runs", default="runs", metavar="DIR",
                   help="where a human call's console run is stored (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the CallResult as JSON instead")

    p = sub.add_parser("run", help="run a batch of persona calls and write its report", epilog=EPILOG_RUN,
                       formatter_class=fmt,
                       description="Call every chosen persona (x repeats) with bounded concurrency, store each "
                                   "result in runs/<run_id>/ as it finishes, print a summary and write the "
                                   "HTML report. Ctrl+C, SIGTERM and SIGHUP stop cleanly; --resume continues.\n\n"
                                   + EXIT_CODES_RUN)
    _add_dataset_args(p)
    p.add_argument("--persona", nargs="+", metavar="ID", help="only these personas (default: all)")
    p.add_argument("--agent", metavar="ID", help="only personas that call this agent")
    p.add_argument("--repeats", type=number(int, 1, 10_000), default=1, metavar="N",
                   help="calls per persona (default: 1)")
    p.add_argument("--concurrency", type=number(int, 1, 1024), default=8, metavar="N",
                   help="calls at once (default: 8)")
    p.add_argument("--mode", choices=["text", "voice"], default="text",
                   help="text messages, or voice: the persona speaks (espeak-ng) and the agent's audio is "
                        "recorded to runs/<id>/audio/ (default: text)")
    p.add_argument("--caller", choices=kinds.names(batch=True), default="scripted",
                   help="who plays the personas: " + "; ".join(
                       f"{n}: {kinds.KINDS[n].help}" for n in kinds.names(batch=True)))
    _add_backend_args(p)
    p.add_argument("--local-url", metavar="URL", default=None,
                   help="use an already running local backend (`voicelab serve`) instead of starting one; "
                        "--latency-ms then belongs to that server")
    p.add_argument("--run-id", type=run_id, metavar="ID", help="name of the run (default: run-<UTC timestamp>)")
    p.add_argument("--resume", type=run_id, metavar="RUN_ID", help="continue a stored run: place only missing calls")
    p.add_argument("--runs", default="runs", metavar="DIR", help="where runs are stored (default: runs)")
    p.add_argument("--reports", default="reports", metavar="DIR", help="where reports go (default: reports)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--fail-under", type=rate, metavar="RATE",
                   help="exit 0 when at least this share of the run's calls succeeded (0.9 or 90%%), "
                        "instead of only when all did (personas' own pass_threshold still count)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML: one test case per persona")
    cli_lab.add_cluster_arg(p)

    p = sub.add_parser("report", help="write the HTML report of a stored run", epilog=EPILOG_REPORT,
                       formatter_class=fmt,
                       description="Execute notebooks/report.ipynb for a stored run with papermill and convert "
                                   "it to a self-contained HTML file (no code, charts embedded).\n\n"
                                   "exit status: 0 written; 1 written, but --strict and unreadable lines; "
                                   "2 bad input (no such run); 130/143/129 interrupted")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id under --runs (or a run folder)")
    p.add_argument("--runs", default="runs", metavar="DIR", help="where runs are stored (default: runs)")
    p.add_argument("--reports", default="reports", metavar="DIR", help="where reports go (default: reports)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when the run's calls.jsonl has unreadable lines (the report is still written)")
    p.add_argument("--audio", choices=["embed", "link", "none"], default="embed",
                   help="voice calls' recordings: embed them in the page as Ogg Opus (one self-contained file), "
                        "link to the WAV files in the run folder (small page; keep reports/ beside runs/), "
                        "or leave them out (default: %(default)s)")

    sub.add_parser("devices", help="list audio devices for voice calls", formatter_class=fmt,
                   description="List the microphones and speakers PortAudio sees, with the index or name to pass "
                               "as --input-device / --output-device.\n\nexit status: 0 devices listed; 1 none "
                               "found (what to do is printed); 2 PortAudio missing")

    p = sub.add_parser("serve", help="run the local ElevenLabs-compatible backend", epilog=EPILOG_SERVE,
                       formatter_class=fmt,
                       description="Serve the agent specs over the ElevenLabs REST and websocket API on "
                                   "one port, until Ctrl+C. Prints the base URL to give the SDK.\n\n"
                                   "exit status: 2 bad agents or options; 130/143/129 stopped by Ctrl+C, "
                                   "SIGTERM or SIGHUP (conversations are closed cleanly)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    p.add_argument("--port", type=number(int, 0, 65535), default=0,
                   help="port; 0 picks a free one (default: %(default)s)")
    p.add_argument("--agents", default="datasets/agents", metavar="DIR",
                   help="folder of agent spec YAML files (default: %(default)s)")
    p.add_argument("--latency-ms", type=number(float, 0), default=0.0, metavar="MS",
                   help="the agent's response time, from the end of the caller's turn to its answer "
                        "(default: 0)")
    p.add_argument("--barge-in-ms", type=number(float, 0), default=0.0, metavar="MS",
                   help="voice calls: how long after the caller starts talking over the agent it stops; "
                        "0 stops at once, and only a reaction time longer than a backchannel (~0.5 s) "
                        "lets the agent talk on through an \"mm-hm\" (default: 0)")
    p.add_argument("--personas", default=None, metavar="PATH",
                   help="personas that pick up outbound phone calls, found by their phone_number "
                        "(default: datasets/personas, if they call the served agents)")
    p.add_argument("--history-limit", type=number(int, 1), default=1000, metavar="N",
                   help="conversations kept for GET/list/audio; older finished ones are dropped "
                        "(default: %(default)s)")
    p.add_argument("--silence-ms", type=number(float, 0, above=True), default=500, metavar="MS",
                   help="voice calls: this much quiet after speech ends the caller's turn (default: %(default)s)")
    p.add_argument("--require-key", action="store_true",
                   help="make every agent private: REST needs xi-api-key = $ELEVENLABS_API_KEY, "
                        "conversations need a signed URL")
    cli_lab.add_parsers(sub, fmt, number, rate, run_id)
    cli_api.add_parser(sub, fmt, number)
    cli_preflight.add_parser(sub, fmt)
    cli_import_calls.add_parser(sub, fmt)
    return parser


def cmd_personas(args: argparse.Namespace) -> int:
    from voicelab.spec.datasets import load_dataset

    ds = load_dataset(args.personas, args.agents)
    print(f"{len(ds.personas)} personas for {len(ds.agents)} agents, all valid\n")
    print(f"{'id':32} {'agent':20} {'lang':4} {'style':13} summary")
    for p in ds.personas.values():
        summary = textwrap.shorten(p.summary, 60)
        print(f"{p.id:32} {p.agent:20} {p.language:4} {p.caller.style:13} {summary}")
    return 0


def format_result(result, persona_name: str = "") -> str:  # noqa: ANN001 - CallResult
    """A readable transcript with the verdict, for terminals and logs."""
    from voicelab.spec.checks import percentile

    lines = [f"Call {result.persona_id} -> {result.agent_id} "
             f"({result.backend}, {result.caller}, {result.mode}){'  ' + persona_name if persona_name else ''}"]
    for e in result.transcript:
        who = "agent" if e.speaker == "agent" else "user "
        body = textwrap.fill(e.text, 88, subsequent_indent=" " * 17)
        lines.append(f"  {e.timestamp:6.2f}s  {who}  {body}")
    lat = result.metrics.response_latency_ms
    lat_text = f", latency p50 {percentile(lat, 50):.0f} ms / p95 {percentile(lat, 95):.0f} ms" if lat else ""
    lines.append("")
    lines.append(f"Ended: {result.end_reason} after {result.duration_seconds:.1f} s, status {result.status}, "
                 f"{result.metrics.turns} turns{lat_text}")
    if result.error:
        lines.append(f"Error: {result.error}")
    m = result.metrics
    if result.mode == "voice":
        wer = f"{m.wer:.2f}" if m.wer is not None else "n/a"
        lines.append(f"Voice: interruptions {m.interruptions}, talk ratio {m.talk_ratio}, WER {wer}, "
                     f"recording {result.audio_path}")
    if result.tool_calls:
        lines.append("Tool calls:")
    for t in result.tool_calls:
        args = ", ".join(f"{k}={v}" for k, v in t.args.items())
        answer = ("done" if t.latency_ms is not None else "no answer") if t.result is None and not t.is_error else \
            f"{'error: ' if t.is_error else '-> '}{json.dumps(t.result, ensure_ascii=False)[:100]}"
        lines.append(f"  {t.at:7.2f}s  {t.tool}({args})  {answer}")
    for c in result.checks:
        lines.append(f"  [{'pass' if c.passed else 'FAIL'}] {c.name}: {c.detail}")
    lines.append(f"Verdict: {'PASS' if result.success else 'FAIL'}")
    return "\n".join(lines)


def cmd_call(args: argparse.Namespace) -> int:
    from voicelab.harness import runners
    from voicelab.lab.backends import backend_url
    from voicelab.spec.datasets import load_dataset

    ds = load_dataset(args.personas, args.agents)
    persona = ds.persona(args.persona)
    if args.caller == "human":
        result = _human_call(args, ds)
    else:
        request = ds.request(persona.id, backend=args.backend, mode=args.mode, caller=args.caller,
                             audio_dir=args.recordings, max_duration_s=args.max_duration)
        runners.preflight([request])
        with backend_url(args.backend, ds, latency_ms=args.latency_ms) as base_url:
            result = asyncio.run(runners.place_one(request, base_url))
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print(format_result(result, persona.name))
    return 0 if result.success else 1


def _human_call(args: argparse.Namespace, ds):  # noqa: ANN001, ANN202 - Dataset -> CallResult
    """You play the persona at the microphone; the call is stored like a console call."""
    from voicelab.audio.sounddevice import SoundDeviceAudio, device_arg
    from voicelab.surfaces.console import ConsoleSession

    if args.mode != "voice":
        raise UsageError("--caller human needs --mode voice here (typed calls are made in the notebook console)")
    persona = ds.persona(args.persona)
    with ConsoleSession(ds, runs_root=args.runs, latency_ms=args.latency_ms) as session:
        audio = SoundDeviceAudio(device_arg(args.input_device), device_arg(args.output_device))
        call = session.place(persona.id, backend=args.backend, mode="voice", caller="human", audio=audio,
                             on_entry=lambda e: print(f"  {e.timestamp:6.2f}s  {e.speaker:5}  {e.text}", flush=True))
        print(f"Talking to {ds.agent_for(persona).name} as {persona.name}. Brief: {persona.summary}\n"
              "Speak into the microphone; Ctrl+C hangs up.", flush=True)
        try:
            return session.finish(call)
        except KeyboardInterrupt:
            call.stop()
            return session.finish(call)


def cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from voicelab.harness import settings
    from voicelab.spec.datasets import load_agents, load_dataset

    if args.history_limit < 1:
        raise UsageError(f"--history-limit {args.history_limit}: keep at least 1 conversation")
    agents = load_agents(args.agents)
    personas = {}
    if args.personas is not None:
        personas = load_dataset(args.personas, args.agents).personas
    elif Path("datasets/personas").is_dir():  # the bundled personas, if they call these agents
        try:
            personas = load_dataset("datasets/personas", args.agents).personas
        except VoiceLabError as exc:
            print(f"note: simulations get no personas ({exc}); pass --personas", file=sys.stderr)
    key = settings.api_key() if args.require_key else None
    from voicelab.local import LocalBackend  # after the input is checked: a mistake is told before a second of imports

    backend = LocalBackend(agents, host=args.host, port=args.port, latency_s=args.latency_ms / 1000,
                           barge_in_s=args.barge_in_ms / 1000,
                           personas=personas, require_key=key, voice_silence_s=args.silence_ms / 1000,
                           history_limit=args.history_limit)

    async def main() -> int:
        # Once serving, a stop signal only sets an event, and the backend is stopped by its own
        # shutdown (connections closed, audio files removed) rather than by an exception raised
        # wherever the loop happened to be, which could leave the loop's teardown waiting.
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        received: list[int] = []
        for signum in signals.HANDLED:
            loop.add_signal_handler(signum, lambda s=signum: (received.append(s), stop.set()))
        url = await backend.astart()
        try:
            heap.settle()  # everything loaded: full collections from now on scan only conversations
            print(f"voicelab local backend at {url} serving agents: {', '.join(sorted(backend.agents))}"
                  + (" (private: key and signed URLs required)" if key else ""), flush=True)
            print(f"  use it with: ElevenLabs(base_url=\"{url}\")  (Ctrl+C stops)", flush=True)
            await stop.wait()
        finally:
            await asyncio.wait_for(backend.astop(), timeout=15)
        return 128 + received[0]

    try:
        code = asyncio.run(main())
    except KeyboardInterrupt as exc:  # a signal before the loop was listening for it
        code = signals.exit_code(exc)
    print(f"voicelab local backend stopped ({signals.name(code)})", file=sys.stderr)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    from voicelab.lab.batch import resume_batch, run_batch

    if args.resume:
        defaults = vars(build_parser().parse_args(["run"]))
        given = [f"--{name.replace('_', '-')}" for name in RUN_SETTINGS if getattr(args, name) != defaults[name]]
        if given:
            raise UsageError(f"{given[0]} cannot change a run being resumed (it keeps its stored settings): "
                             f"drop {', '.join(given)}, or start a new run")
        outcome = resume_batch(args.resume, runs_root=args.runs, local_url=args.local_url, cluster=args.cluster)
    else:
        if args.backend == "elevenlabs":  # the agent's platform settings first: a blocker is exit 2 here
            cli_preflight.before_run(args)
        outcome = run_batch(args.personas, args.agents, persona_ids=args.persona, agent=args.agent,
                            repeats=args.repeats, concurrency=args.concurrency, backend=args.backend,
                            caller=args.caller, mode=args.mode,
                            run_id=args.run_id, latency_ms=args.latency_ms, max_duration_s=args.max_duration,
                            runs_root=args.runs, local_url=args.local_url, cluster=args.cluster)
    return cli_lab.finish_run(outcome, args, resume_hint="voicelab run --resume")


def cmd_report(args: argparse.Namespace) -> int:
    from voicelab.lab.store import RunStore
    from voicelab.lab.tables import check_lines
    from voicelab.report.build import build_report

    store = RunStore(args.runs)
    store.require_inside(args.run_id)
    run = store.open(args.run_id)
    check_lines(run)  # warns on the terminal about lines it cannot read; the report's header says so too
    path = build_report(args.run_id, runs_root=args.runs, reports_dir=args.reports, audio=args.audio)
    print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 1 if args.strict and run.unreadable_lines else 0


def cmd_devices(args: argparse.Namespace) -> int:
    from voicelab.audio.sounddevice import list_devices, load_sounddevice

    sd = load_sounddevice()
    default_in, default_out = sd.default.device
    devices = list_devices()
    if not any(d["inputs"] for d in devices) or not any(d["outputs"] for d in devices):
        missing = "no audio devices" if not devices else \
            f"no {'microphone' if not any(d['inputs'] for d in devices) else 'speaker'}"
        print(f"PortAudio finds {missing}. Voice calls need a microphone and a speaker:\n"
              "  - a desktop: start PulseAudio (`pulseaudio --start`) or PipeWire;\n"
              "    check `pactl list short sources`;\n"
              "  - ALSA only: check `arecord -l` / `aplay -l`, and that your user is in the `audio` group;\n"
              "  - a headless machine or container: apt-get install pulseaudio libasound2-plugins\n"
              "    (scripts/setup.sh), then virtual devices as the tests use (voicelab/audio/pulse.py);\n"
              "  - or no devices at all: `voicelab call --mode voice` speaks with a synthetic caller voice.",
              file=sys.stderr)
    if not devices:
        return 1
    print(f"{'index':>5}  {'in':>3} {'out':>3}  {'rate':>6}  name")
    for d in devices:
        mark = (" (default input)" if d["index"] == default_in else "") + (
            " (default output)" if d["index"] == default_out else "")
        print(f"{d['index']:>5}  {d['inputs']:>3} {d['outputs']:>3}  {d['default_rate']:>6}  {d['name']}{mark}")
    return 0


COMMANDS = {"personas": cmd_personas, "devices": cmd_devices, "call": cmd_call, "run": cmd_run,
            "report": cmd_report, "serve": cmd_serve, "api": cli_api.cmd_api,
            **cli_lab.COMMANDS, **cli_preflight.COMMANDS,
            **cli_import_calls.COMMANDS}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    previous = signals.install()  # SIGTERM and SIGHUP are Ctrl+C while the command runs
    try:
        return COMMANDS[args.command](args)
    except VoiceLabError as exc:
        print(f"voicelab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        code = signals.exit_code(exc)
        print(f"voicelab: interrupted ({signals.name(code)})", file=sys.stderr)
        return code
    except BrokenPipeError:  # `voicelab personas | head`: the reader is gone, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # a bug: one line and a log, never a traceback taken for a verdict
        print(f"voicelab: {crashlog.one_line(exc)}", file=sys.stderr)
        return crashlog.INTERNAL
    finally:
        signals.restore(previous)


def entry() -> NoReturn:
    """The `voicelab` command: `main()`, then exit with its status. Stop signals stay handled to
    the end and are then ignored, so one arriving while Python shuts down cannot replace the
    status (only the process does this: `main()` called in-process leaves the caller's handlers).

    What is alive at the end is frozen out of the garbage collector's sight first: the process
    is ending, and Python's last collections over a run's ~100,000 objects (the SDK's and the
    backend's modules and models) took 0.1 s of every command's wall time, a tenth of a one-call
    run's, to free memory the operating system takes back anyway. Files are closed and exit
    handlers run as before."""
    signals.install()
    code = main()
    signals.exiting()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
