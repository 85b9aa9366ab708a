"""What the agent heard, in the tables: each caller turn's words as heard (`text`) beside what
the persona said (`said`), per-call WER in the calls table and per-persona WER beside it."""

from __future__ import annotations

from pathlib import Path

from voicelab.lab.store import RunStore
from voicelab.lab.tables import calls_table, load_runs, turns_table, wer_by_persona
from voicelab.spec.models import CallResult, Metrics, RunManifest, TranscriptEntry
from voicelab.surfaces.cli.text import summary_text, summary_text_of


def voice_result(call_id: str, persona: str, wer: float | None) -> CallResult:
    transcript = [TranscriptEntry(speaker="agent", text="Am I speaking with Anna?", timestamp=0.5),
                  TranscriptEntry(speaker="user", text="yes this is and a", said="Yes, this is Anna.", timestamp=2.0)]
    return CallResult(conversation_id=f"conv-{call_id}", status="completed", call_id=call_id, persona_id=persona,
                      run_id="heard", success=True, duration_seconds=3.0, transcript=transcript, agent_id="a",
                      backend="local", caller="scripted", mode="voice", started_at="2026-12-07T00:00:00.000Z",
                      end_reason="agent_ended", metrics=Metrics(turns=2, agent_turns=1, user_turns=1, wer=wer))


def texts(column) -> list[str | None]:  # noqa: ANN001 - a pandas column
    """A text column's values, a missing one (None, NaN, NA) as None."""
    return [v if isinstance(v, str) else None for v in column.tolist()]


def test_turns_keep_what_was_said_beside_what_was_heard_and_personas_their_wer(tmp_path: Path) -> None:
    results = [voice_result("c1", "anna", 0.25), voice_result("c2", "anna", 0.75), voice_result("c3", "sven", None)]
    turns = turns_table(results)
    caller = turns[turns["speaker"] == "user"].iloc[0]
    assert (caller["text"], caller["said"]) == ("yes this is and a", "Yes, this is Anna.")
    assert turns[turns["speaker"] == "agent"]["said"].isna().all()
    per_persona = wer_by_persona(calls_table(results))
    assert per_persona.to_dict("records") == [{"persona_id": "anna", "calls": 2, "wer_mean": 0.5, "wer_max": 0.75}]
    # the stored run reads back the same, and both summary screens print the persona's WER
    store = RunStore(tmp_path / "runs")
    run = store.create(RunManifest(run_id="heard", personas=["anna", "sven"], agent="a"))
    for r in results:
        run.append(r)
    tables = load_runs("heard", root=tmp_path / "runs")
    assert texts(tables.turns["said"]) == texts(turns["said"]) == [None, "Yes, this is Anna."] * 3
    screen = summary_text(tables)
    assert screen == summary_text_of(results)
    assert "WER" in screen and " 0.50 " in screen
