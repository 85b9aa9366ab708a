"""Generated runs for the property-based tests (tests/test_properties_*.py): stored-call results
as a user's own agent produces them, not as the bundled world does.

A run is drawn as a few personas, each with a repeat count (1..200) and an outcome (all pass, all
fail, or a mix); the calls themselves are then made from a seed, so hypothesis explores the shape
(counts, outcomes, gaps) cheaply and each example is still reproducible. Calls fail both with and
without an `error`, miss optional fields, carry NaN where a float may be NaN, and use unicode
(markup characters included) in persona ids, check names and transcript text.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from hypothesis import strategies as st

from voicelab.lab.compare import Side
from voicelab.lab.tables import Tables, calls_table, tools_table, turns_table
from voicelab.spec.models import CallResult, Check, Metrics, RunManifest, ToolCallRecord, TranscriptEntry

#: Persona ids a user might choose: plain, accented, other scripts, markup, spaces, an emoji.
PERSONA_IDS = ["anna", "zoë-müller", "日本の患者", "<b>&amp;</b>", "o'brien \"quoted\"", "patient 🦷", "x" * 60,
               "fatma-ağrı", "ølaf", "дмитрий"]
CHECK_NAMES = ["agent_says: your appointment", "agent_never_says: Versicherungsnummer", "ended_by: agent",
               "agent_calls: book_slot", "max_latency_ms", "min_turns", "agent_says: <ok> & \"done\""]
TEXTS = ["Hello, Dr. Ñúñez's practice.", "¿Tiene una cita?", "Ja, Dienstag passt.", "歯が痛いです", "",
         "<script>x</script>", "line one\nline two", "😀 thanks"]
ERRORS = ["websocket closed with 1008: missing dynamic variable 'patient_id'", "webhook answered 500",
          "connection refused", "Fehler: Zeitüberschreitung"]


@dataclass(frozen=True)
class PersonaPlan:
    persona_id: str
    calls: int
    #: "pass": every call passes; "fail": none does; "mixed": each call by the seed.
    outcome: str


@dataclass(frozen=True)
class RunPlan:
    personas: tuple[PersonaPlan, ...]
    seed: int
    voice: bool

    @property
    def calls(self) -> int:
        return sum(p.calls for p in self.personas)


def plans(max_personas: int = 4, max_calls: int = 200, outcomes: tuple[str, ...] = ("pass", "fail", "mixed"),
          ) -> st.SearchStrategy[RunPlan]:
    """Runs of 1..max_personas distinct personas, each with 1..max_calls calls."""
    persona = st.builds(PersonaPlan, st.sampled_from(PERSONA_IDS), st.integers(1, max_calls),
                        st.sampled_from(outcomes))
    return st.builds(RunPlan, st.lists(persona, min_size=1, max_size=max_personas, unique_by=lambda p: p.persona_id)
                     .map(tuple), st.integers(0, 2**32 - 1), st.booleans())


def _maybe_nan(rng: random.Random, value: float) -> float:
    return math.nan if rng.random() < 0.1 else value


def _call(rng: random.Random, plan: PersonaPlan, index: int, passed: bool, run_id: str, voice: bool,
          variant: str | None) -> CallResult:
    failed_to_run = not passed and rng.random() < 0.4  # a connection or error, not a failed check
    transcript = []
    at = 0.0
    for turn in range(rng.randint(0, 4) if not failed_to_run else rng.randint(0, 1)):
        at += rng.random() * 3
        latency = None if turn % 2 == 0 or rng.random() < 0.2 else _maybe_nan(rng, rng.uniform(50, 4000))
        speaker = "agent" if turn % 2 == 0 else "user"
        text = rng.choice(TEXTS)
        # voice: a caller turn keeps what the persona said beside what the agent heard; an agent
        # turn may have been cut off by the caller
        said = rng.choice([text, rng.choice(TEXTS)]) if voice and speaker == "user" else None
        cut = voice and speaker == "agent" and rng.random() < 0.3
        transcript.append(TranscriptEntry(speaker=speaker, text=text, timestamp=at, latency_ms=latency, said=said,
                                          interrupted=cut, original_text=rng.choice(TEXTS) if cut else None))
    names = rng.sample(CHECK_NAMES, rng.randint(0 if failed_to_run or not passed else 1, 3))
    if not passed and not failed_to_run and not names:
        names = [CHECK_NAMES[0]]
    checks = [Check(name=n, passed=passed or (i > 0 and rng.random() < 0.5), detail=rng.choice(TEXTS))
              for i, n in enumerate(names)]
    latencies = [t.latency_ms for t in transcript if t.latency_ms is not None]
    metrics = Metrics(turns=len(transcript), agent_turns=sum(t.speaker == "agent" for t in transcript),
                      user_turns=sum(t.speaker == "user" for t in transcript), response_latency_ms=latencies,
                      talk_ratio=_maybe_nan(rng, rng.uniform(0, 2)) if voice and rng.random() < 0.8 else None,
                      wer=_maybe_nan(rng, rng.uniform(0, 1.2)) if voice and rng.random() < 0.8 else None,
                      condition=rng.choice(["clean", "babble 10 dB, phone", None]) if voice else None)
    tools = [ToolCallRecord(tool=rng.choice(["book_slot", "lookup_patient", "end_call"]),
                            type=rng.choice(["client", "webhook", "system"]), args={"when": rng.choice(TEXTS)},
                            result=rng.choice([None, {"ok": True}, "fine"]), is_error=rng.random() < 0.2,
                            at=rng.random() * 5, latency_ms=rng.choice([None, 12.5]),
                            turn=rng.choice([None, 0, 1]))
             for _ in range(rng.randint(0, 2))]
    error = rng.choice(ERRORS) if failed_to_run and rng.random() < 0.6 else None  # failed, with or without why
    return CallResult(
        conversation_id=rng.choice([None, f"conv_{index}"]), status="failed" if failed_to_run else "completed",
        duration_seconds=_maybe_nan(rng, rng.uniform(0.1, 120)), transcript=transcript, run_id=run_id,
        call_id=None if rng.random() < 0.05 else f"{plan.persona_id}#{index}",
        persona_id=plan.persona_id, agent_id="dentist", backend="local", caller="scripted",
        mode="voice" if voice else "text", started_at="2026-01-01T00:00:00.000Z",
        end_reason=(rng.choice(["error", "disconnected"]) if failed_to_run else
                    rng.choice(["agent_ended", "caller_ended", "timeout"])),
        error=error, metrics=metrics, checks=checks, success=passed, tool_calls=tools, variant=variant)


def results(plan: RunPlan, run_id: str = "run", variant: str | None = None,
            outcome: str | None = None) -> list[CallResult]:
    """The calls of a plan (`outcome` overrides every persona's: "pass" or "fail")."""
    rng = random.Random(plan.seed)
    out = []
    for persona in plan.personas:
        how = outcome or persona.outcome
        for i in range(1, persona.calls + 1):
            passed = how == "pass" or (how == "mixed" and rng.random() < 0.5)
            out.append(_call(rng, persona, i, passed, run_id, plan.voice, variant))
    return out


def tables_of(calls: list[CallResult], run_id: str = "run") -> Tables:
    personas = list(dict.fromkeys(r.persona_id for r in calls))
    manifest = RunManifest(run_id=run_id, personas=personas, agent="dentist",
                           persona_info={p: {"name": p, "agent": "dentist", "tools": "book_slot, lookup_patient"}
                                         for p in personas})
    return Tables(calls, {run_id: manifest}, calls_table(calls), turns_table(calls), tools_table(calls))


def side_of(calls: list[CallResult], label: str = "run") -> Side:
    tables = tables_of(calls, label)
    return Side(label, tables.calls, tables.turns)
