"""`voicelab api`: the REST service (voicelab/surfaces/api/) under uvicorn, until Ctrl+C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import socket
import sys
from typing import Any

from voicelab.lab import signals
from voicelab.spec.errors import ConfigError, UsageError

EPILOG_API = """examples:
  voicelab api                                   # http://127.0.0.1:8000, docs at /docs
  voicelab api --port 8080 --max-call-s 120
  VOICELAB_API_KEY=... voicelab api --host 0.0.0.0   # reachable from other machines: a key is required
  ELEVENLABS_API_KEY=... ELEVENLABS_AGENT_ID=... ELEVENLABS_PHONE_NUMBER_ID=... voicelab api --backend elevenlabs
  curl -s localhost:8000/api/conversation/start -H 'Content-Type: application/json' -d @request.json

exit status: 0 stopped cleanly; 2 bad options or settings, an empty VOICELAB_API_KEY among them
(nothing started); 130/143 stopped by Ctrl+C / SIGTERM (calls in flight are stored as cancelled,
runs stay resumable; background calls accepted and callbacks owed are answered by the next start)"""


def add_parser(sub: Any, fmt: type, number: Any) -> None:  # noqa: ANN401 - argparse sub-parsers
    p = sub.add_parser("api", help="serve the REST API (POST /api/conversation/start, runs over HTTP)",
                       epilog=EPILOG_API, formatter_class=fmt,
                       description="Serve voicelab over HTTP with OpenAPI docs at /docs: the conversation "
                                   "service's POST /api/conversation/start, background calls with callbacks, "
                                   "and runs (start, watch, report, results, cancel). Every call is stored in "
                                   "one run per service start (runs/api-<time>). Settings not given here come "
                                   "from VOICELAB_API_* environment variables (docs/api.md).")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default: %(default)s); anything but loopback needs VOICELAB_API_KEY")
    p.add_argument("--port", type=number(int, 1, 65535), default=8000, help="port (default: %(default)s)")
    p.add_argument("--backend", choices=("local", "elevenlabs"), default=None,
                   help="where calls go: the embedded local backend (default) or the hosted platform, which "
                        "dials phone_number (needs ELEVENLABS_API_KEY, ELEVENLABS_AGENT_ID or the agent file's "
                        "elevenlabs_agent_id, ELEVENLABS_PHONE_NUMBER_ID)")
    p.add_argument("--personas", default=None, metavar="PATH", help="persona files (default: datasets/personas)")
    p.add_argument("--agents", default=None, metavar="DIR", help="agent files (default: datasets/agents)")
    p.add_argument("--runs", default=None, metavar="DIR", help="run store (default: runs)")
    p.add_argument("--reports", default=None, metavar="DIR", help="HTML reports (default: reports)")
    p.add_argument("--max-call-s", type=number(float, 0, above=True), default=None, metavar="S",
                   help="a call lasting longer ends as failed with end_reason timeout (default: 300)")
    p.add_argument("--max-concurrent-calls", type=number(int, 1), default=None, metavar="N",
                   help="calls in flight at once, for calls and runs together; more wait their turn (default: 32)")
    p.add_argument("--max-run-calls", type=number(int, 1), default=None, metavar="N",
                   help="calls one run may plan (personas x repeats x variants); bigger runs are refused with "
                        "422 (default: 10000)")
    p.add_argument("--max-pending-calls", type=number(int, 1), default=None, metavar="N",
                   help="calls accepted and not yet finished, waiting or in flight; more work is refused with "
                        "429 (default: 20000)")
    p.add_argument("--latency-ms", type=number(float, 0), default=None, metavar="MS",
                   help="the local backend's response latency (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no access log, only warnings")


def cmd_api(args: argparse.Namespace) -> int:
    from voicelab.spec.datasets import load_dataset
    from voicelab.surfaces.api.service import ServiceSettings, loopback

    config = ServiceSettings.from_env(
        backend=args.backend, personas=args.personas, agents=args.agents, runs_root=args.runs,
        reports_dir=args.reports, max_call_s=args.max_call_s, max_concurrent_calls=args.max_concurrent_calls,
        max_run_calls=args.max_run_calls, max_pending_calls=args.max_pending_calls, latency_ms=args.latency_ms)
    if not loopback(args.host) and not config.api_key:
        raise ConfigError(f"--host {args.host} makes the service reachable from other machines: set VOICELAB_API_KEY "
                          "(clients then send Authorization: Bearer <key>), or bind to 127.0.0.1")
    load_dataset(config.personas, config.agents)  # bad files are named now, not as a failed startup
    _check_port(args.host, args.port)
    from voicelab.surfaces.api import create_app

    return _serve(create_app(config), args.host, args.port, quiet=args.quiet, keyed=bool(config.api_key),
                  backend=config.backend)


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is in use: pick another --port") from None
            raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}): check --host and --port") from None


def _serve(app: Any, host: str, port: int, *, quiet: bool, keyed: bool, backend: str) -> int:  # noqa: ANN401
    import uvicorn

    logging.getLogger("voicelab").setLevel(logging.WARNING if quiet else logging.INFO)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning" if quiet else "info",
                                           access_log=not quiet, timeout_graceful_shutdown=30))

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            shown = f"[{host}]" if ":" in host else host
            print(f"voicelab API at http://{shown}:{port} ({backend} backend"
                  + (", bearer key required" if keyed else "") + ")", flush=True)
            print(f"  docs: http://{shown}:{port}/docs  (Ctrl+C stops)", flush=True)
        await task

    try:
        asyncio.run(main())
    except KeyboardInterrupt as exc:  # uvicorn stopped gracefully, then passed the signal on
        print(f"voicelab API stopped ({signals.name(signals.exit_code(exc))})", file=sys.stderr)
        return signals.exit_code(exc)
    if not server.started:
        print("voicelab: error: the service did not start (see the log above)", file=sys.stderr)
        return 2
    return 0
