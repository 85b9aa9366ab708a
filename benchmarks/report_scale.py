"""Report time, memory and size at scale (issue "Scale on one machine").

    .venv/bin/python benchmarks/report_scale.py                 # N = 10,000 and 100,000 (~2 minutes)
    .venv/bin/python benchmarks/report_scale.py 10000           # one size (or several: 2000 10000)
    .venv/bin/python benchmarks/report_scale.py 10000 --keep /tmp/rs   # keep the run and the report

For each N a synthetic run of N calls is written to a temporary store (eight personas, unicode ids
among them, mixed pass and fail: failed checks, calls that failed with and without an error,
timeouts; 4 to 14 transcript turns, 2 to 6 checks and 0 to 3 tool calls per call, ~3 KB a line as
the bundled world writes them; 0.5% of the calls stored twice as a resume does, and one torn last
line), then `build_report` is timed on it in a fresh process of its own. Peak memory is that
process's maximum RSS plus its children's (the notebook kernel): resource.getrusage(SELF) +
getrusage(CHILDREN). Targets: 10,000 calls in <= 10 s and <= 5 MB of HTML; 100,000 calls in
<= 60 s and <= 1 GB. Figures are printed as JSON; record them in benchmarks/README.md.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = {10_000: {"wall_s": 10.0, "html_mb": 5.0}, 100_000: {"wall_s": 60.0, "peak_mb": 1024.0}}
PERSONAS = [("anna-double-charge", "cooperative"), ("kevin-in-a-hurry", "impatient"),
            ("zoë-müller", "confused"), ("日本の患者", "cooperative"), ("silent-line", "silent"),
            ("o'brien <b>&amp;</b>", "interrupting"), ("fatma-ağrı", "cooperative"), ("дмитрий", "impatient")]
AGENT_LINES = ["Hello {name}, this is Northbank calling about a payment on your card.",
               "Am I speaking with {name}? I need to confirm your name first.",
               "Thank you. I can see a charge of 49.99 from StreamMax on the 3rd of November.",
               "Do you recognise that payment, or should I open a dispute for you?",
               "I have opened the dispute; you will receive a letter within five working days.",
               "Is there anything else I can help you with today?", "Thank you for your time. Goodbye."]
USER_LINES = ["Yes, this is {name}.", "No, I never made that payment.", "Sorry, could you say that again?",
              "Ja, das passt mir gut.", "歯が痛いです", "Please hurry, I'm at work.", "No, that's all. Bye."]
CHECKS = ["agent_says: Premium Gym Membership", "agent_never_says: card number", "ended_by: agent",
          "agent_calls: lookup_dispute", "max_latency_ms", "min_turns", "agent_says_in_order",
          "max_duration_s"]
TOOLS = [("lookup_dispute", "client"), ("confirm_dispute", "webhook"), ("end_call", "system")]
ERRORS = ["websocket closed with 1008: missing dynamic variable 'first_name'", "webhook answered 500",
          "connection refused", "Fehler: Zeitüberschreitung"]


def _turn(speaker: str, text: str, at: float, latency: float | None) -> dict:
    return {"speaker": speaker, "text": text, "timestamp": round(at, 3), "latency_ms": latency,
            "original_text": None, "interrupted": False, "said": None}


def call(rng: random.Random, run_id: str, persona: str, repeat: int) -> dict:
    """One CallResult as model_dump_json writes it (every field, defaults included)."""
    outcome = rng.random()
    failed_to_run = outcome < 0.03  # could not be placed or completed
    failed_check = 0.03 <= outcome < 0.15
    name = persona.split("-")[0].title()
    transcript, at, latencies = [], 0.0, []
    for i in range(1 if failed_to_run else rng.randint(4, 14)):
        at += rng.uniform(0.4, 3.0)
        if i % 2 == 0:
            latency = None if i == 0 else round(rng.lognormvariate(6.3, 0.35), 1)
            if latency is not None:
                latencies.append(latency)
            transcript.append(_turn("agent", rng.choice(AGENT_LINES).format(name=name), at, latency))
        else:
            transcript.append(_turn("user", rng.choice(USER_LINES).format(name=name), at, None))
    names = rng.sample(CHECKS, 0 if failed_to_run else rng.randint(2, 6))
    bad = rng.randrange(len(names)) if failed_check and names else -1
    checks = [{"name": n, "passed": i != bad, "detail": "said in agent turn 2" if i != bad else
               "never said in any agent turn"} for i, n in enumerate(names)]
    tools = [{"tool": tool, "type": kind, "id": f"toolu_{rng.getrandbits(64):016x}",
              "args": {"phone_number": "+48601234567"}, "result": {"amount": "49.99", "merchant": "StreamMax"},
              "is_error": rng.random() < 0.05, "at": round(rng.uniform(0, at or 1), 3),
              "latency_ms": round(rng.uniform(1, 40), 1), "turn": rng.randint(1, max(1, len(transcript)))}
             for tool, kind in rng.sample(TOOLS, 0 if failed_to_run else rng.randint(0, 3))]
    end_reason = (rng.choice(["error", "disconnected"]) if failed_to_run else
                  "timeout" if failed_check and rng.random() < 0.3 else rng.choice(["agent_ended", "caller_ended"]))
    agent = sum(t["speaker"] == "agent" for t in transcript)
    return {
        "conversation_id": None if failed_to_run else f"conv_{rng.getrandbits(96):024x}",
        "status": "failed" if failed_to_run else "completed", "duration_seconds": round(at + rng.random(), 3),
        "transcript": transcript, "run_id": run_id, "call_id": f"{persona}#{repeat}", "persona_id": persona,
        "agent_id": "chargeback", "backend": "local", "caller": "scripted", "mode": "text",
        "started_at": f"2026-12-08T10:{repeat // 60 % 60:02d}:{repeat % 60:02d}.000Z", "end_reason": end_reason,
        "error": rng.choice(ERRORS) if failed_to_run and rng.random() < 0.7 else None,
        "metrics": {"turns": len(transcript), "agent_turns": agent, "user_turns": len(transcript) - agent,
                    "response_latency_ms": latencies, "interruptions": 0, "talk_ratio": None, "wer": None,
                    "first_audio_ms": [], "first_speech_ms": [], "condition": None, "frames_lost": 0,
                    "barge_ins": []},
        "checks": checks, "success": not (failed_to_run or failed_check), "analysis": None, "audio_path": None,
        "retries": [], "tool_calls": tools, "variant": None, "caller_conversation_id": None,
        "caller_transcript": None,
    }


def write_run(root: Path, run_id: str, calls: int, seed: int = 7) -> Path:
    """A stored run of `calls` calls under root/run_id, written line by line (little memory)."""
    from voicelab.spec.models import CallResult, RunManifest, RunSession

    folder = root / run_id
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    repeats = -(-calls // len(PERSONAS))
    manifest = RunManifest(
        run_id=run_id, personas=[p for p, _ in PERSONAS], agent="chargeback", repeats=repeats, concurrency=16,
        persona_info={p: {"name": p.split("-")[0].title(), "agent": "chargeback", "style": style, "language": "en",
                          "tools": "lookup_dispute, confirm_dispute, transfer_to_number"} for p, style in PERSONAS},
        state="finished", sessions=[RunSession(started_at="2026-12-08T10:00:00.000Z", state="finished",
                                               calls_planned=calls, calls_stored=calls)])
    (folder / "run.json").write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    with open(folder / "calls.jsonl", "w", encoding="utf-8") as f:
        for n in range(calls):
            persona, _ = PERSONAS[n % len(PERSONAS)]
            line = json.dumps(call(rng, run_id, persona, n // len(PERSONAS) + 1), ensure_ascii=False)
            if n % 1000 == 0:
                CallResult.model_validate_json(line)  # the generator writes what voicelab writes
            f.write(line + "\n")
            if rng.random() < 0.005:  # re-run on resume: stored again, the later result counts
                f.write(json.dumps(call(rng, run_id, persona, n // len(PERSONAS) + 1), ensure_ascii=False) + "\n")
        f.write(line[: len(line) // 2])  # a torn last line (a killed writer): skipped and counted
    return folder


def measure(calls: int, keep: str | None) -> dict:
    """Write a run of `calls` calls, then time build_report in a fresh process (`_child`)."""
    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="report-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    run_id = f"scale-{calls}"
    start = time.perf_counter()
    if not (base / "runs" / run_id).exists():
        write_run(base / "runs", run_id, calls)
    generated = time.perf_counter() - start
    out = subprocess.run([sys.executable, __file__, "--child", str(base), run_id], capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise SystemExit(f"report of {calls} calls failed:\n{out.stderr[-4000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["jsonl_mb"] = round((base / "runs" / run_id / "calls.jsonl").stat().st_size / 1e6, 1)
    figures["generate_s"] = round(generated, 1)
    target = TARGETS.get(calls, {})
    figures["targets"] = {k: {"limit": v, "met": figures[k] <= v} for k, v in target.items()}
    if not keep:
        subprocess.run(["rm", "-rf", str(base)], check=False)
    return {"calls": calls, **figures}


def _child(base: str, run_id: str) -> None:
    from voicelab.report.build import build_report

    reports = Path(base) / "reports"
    start = time.perf_counter()
    path = build_report(run_id, runs_root=Path(base) / "runs", reports_dir=reports)
    wall = time.perf_counter() - start
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kernel_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    text = path.read_text(encoding="utf-8")
    beside = {p.name.removeprefix(run_id): round(p.stat().st_size / 1e6, 2) for p in reports.iterdir()
              if p.name.startswith(f"{run_id}.") and p.suffix in (".parquet", ".csv")}
    print(json.dumps({"wall_s": round(wall, 2), "peak_mb": round(self_mb + kernel_mb), "self_mb": round(self_mb),
                      "kernel_mb": round(kernel_mb), "html_mb": round(len(text.encode()) / 1e6, 2),
                      "html_rows": text.count("<tr"), "beside_mb": beside}))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        _child(*argv[1:3])
        return
    keep = None
    if "--keep" in argv:
        keep = argv[argv.index("--keep") + 1]
        argv = [a for a in argv if a not in ("--keep", keep)]
    sizes = [int(a) for a in argv] or [10_000, 100_000]
    figures = {"machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}", "sizes": []}
    for n in sizes:
        figures["sizes"].append(measure(n, os.path.join(keep, str(n)) if keep else None))
        print(json.dumps(figures["sizes"][-1]), file=sys.stderr, flush=True)
    print(json.dumps(figures, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1:])
