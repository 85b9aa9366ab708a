"""A report of a big run stays small and says what it leaves out (issue "Scale on one machine"),
and the tables `load_runs` reads column-wise equal the model-based reading (calls_table,
turns_table and tools_table over `Run.results()`) on generated runs (tests/properties.py): any
repeat count, all pass, all fail, calls stored twice, torn and foreign lines, missing fields,
NaN, unicode, one run or two."""

from __future__ import annotations

import html
import json
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab.lab.store import RunStore
from voicelab.lab.tables import calls_table, load_runs, tools_table, turns_table
from voicelab.report import build as report
from voicelab.report.build import build_report
from voicelab.spec.errors import UsageError
from voicelab.spec.models import CallResult, RunManifest

from ..properties import PersonaPlan, RunPlan, plans, results

#: Keys a stored line may leave out (the models' defaults fill them in), by where they are.
OPTIONAL = {"call": ["run_id", "call_id", "error", "metrics", "checks", "success", "analysis", "audio_path",
                     "retries", "tool_calls", "variant", "caller_conversation_id", "caller_transcript"],
            "metrics": ["turns", "agent_turns", "user_turns", "response_latency_ms", "interruptions", "talk_ratio",
                        "wer", "condition", "frames_lost", "barge_ins"],
            "turn": ["latency_ms", "original_text", "interrupted", "said"],
            "tool": ["type", "id", "args", "result", "is_error", "at", "latency_ms", "turn"]}


def _line(r: CallResult, rng: random.Random) -> str:
    """A stored line for `r`: as voicelab writes it, or with NaN written as NaN (not null) and
    optional keys left out, as another writer of the format may."""
    if rng.random() < 0.3:
        return r.model_dump_json()
    data = r.model_dump()
    if rng.random() < 0.5:
        for key in OPTIONAL["call"]:
            if rng.random() < 0.3:
                data.pop(key, None)
        for entry in data.get("transcript", []):
            for key in OPTIONAL["turn"]:
                if rng.random() < 0.3:
                    entry.pop(key, None)
        for call in data.get("tool_calls", []):
            for key in OPTIONAL["tool"]:
                if rng.random() < 0.3:
                    call.pop(key, None)
        for key in OPTIONAL["metrics"]:
            if "metrics" in data and rng.random() < 0.3:
                data["metrics"].pop(key, None)
    return json.dumps(data, ensure_ascii=rng.random() < 0.2)  # NaN stays NaN; sometimes \\u escapes


def store_run(root: Path, run_id: str, calls: list[CallResult], seed: int, damage: bool = True) -> None:
    """A run folder as voicelab keeps it: run.json and calls.jsonl, with (when `damage`) lines
    written as other writers may (`_line`: some then unreadable, as a NaN duration dumped as null), some
    calls stored again later (a resume: the later result counts), torn lines (one cut inside a
    multi-byte character), a JSON line that is no CallResult and blank lines."""
    rng = random.Random(seed)
    personas = list(dict.fromkeys(r.persona_id for r in calls))
    manifest = RunManifest(run_id=run_id, personas=personas, agent="dentist",
                           persona_info={p: {"name": p.upper(), "agent": "dentist", "style": "confused",
                                             "language": "de", "tools": "book_slot"} for p in personas[:-1]})
    folder = root / run_id
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(manifest.model_dump_json(), encoding="utf-8")
    lines: list[bytes] = []
    for r in calls:  # undamaged: every line readable (model_dump_json writes a NaN duration as null)
        lines.append(_line(r, rng).encode() if damage else json.dumps(r.model_dump(), ensure_ascii=False).encode())
        if damage and rng.random() < 0.05:  # the same call again, another outcome, after a few more
            again = r.model_copy(update={"success": not r.success, "duration_seconds": rng.random(),
                                         "error": "re-run", "transcript": r.transcript[:1]})
            lines.insert(len(lines) - rng.randint(0, 3) if lines else 0, _line(again, rng).encode())
        if damage and rng.random() < 0.03:
            torn = _line(r, rng).encode()
            lines.append(torn[: rng.randint(1, len(torn) - 1)])
    if damage:
        lines.insert(rng.randint(0, len(lines)), b'{"event": "accepted", "id": "x"}')
        lines.insert(rng.randint(0, len(lines)), b"  ")
        cut = "{\"persona_id\": \"ølaf ü 日本\"".encode()
        lines.insert(rng.randint(0, len(lines)), cut[:-2])  # ends inside a character
    (folder / "calls.jsonl").write_bytes(b"\n".join(lines) + (b"\n" if rng.random() < 0.7 else b""))


def assert_same_as_models(root: Path, run_ids: list[str]) -> None:
    """load_runs' tables, row for row and dtype for dtype, as the models give them."""
    tables = load_runs(run_ids, root=root)
    runs = [RunStore(root).open(run_id) for run_id in run_ids]
    stored = [r for run in runs for r in run.results()]
    manifests = {run.run_id: run.manifest for run in runs}
    pd.testing.assert_frame_equal(tables.calls, calls_table(stored, manifests))
    pd.testing.assert_frame_equal(tables.turns, turns_table(stored, manifests))
    pd.testing.assert_frame_equal(tables.tools, tools_table(stored))
    assert tables.unreadable == {run.run_id: run.unreadable_summary() for run in runs if run.unreadable_lines}
    dumped = [r.model_dump_json() for r in stored]  # (NaN is never equal to itself, its JSON is)
    if stored:
        picked = sorted({0, len(stored) // 2, len(stored) - 1})
        assert [r.model_dump_json() for r in tables.results_at(picked)] == [dumped[i] for i in picked]
    assert [r.model_dump_json() for r in tables.results] == dumped
    lean = load_runs(run_ids, root=root, turn_columns=["latency_ms", "run_id"])
    assert list(lean.turns.columns) == ["run_id", "latency_ms"]
    pd.testing.assert_frame_equal(lean.turns, tables.turns[["run_id", "latency_ms"]])
    pd.testing.assert_frame_equal(lean.calls, tables.calls)


@settings(max_examples=30, deadline=None)
@given(plans(), st.booleans(), st.integers(0, 2**16))
def test_the_tables_read_column_wise_equal_the_model_based_reading(plan: RunPlan, two_runs: bool, seed: int):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store_run(root, "first", results(plan, run_id="first"), seed)
        ids = ["first"]
        if two_runs:  # a second run whose results name the first as their run (copied files)
            other = RunPlan(plan.personas[::-1], plan.seed + 1, not plan.voice)
            store_run(root, "second", results(other, run_id="first" if seed % 2 else "second",
                                              variant="v1" if seed % 3 else None), seed + 1)
            ids.append("second")
        assert_same_as_models(root, ids)


@pytest.mark.parametrize("outcome", ["pass", "fail"])
def test_all_pass_and_all_fail_runs_read_the_same_both_ways(tmp_path: Path, outcome: str):
    plan = RunPlan((PersonaPlan("zoë-müller", 300, outcome), PersonaPlan("日本の患者", 7, outcome)), seed=5, voice=True)
    store_run(tmp_path, "r", results(plan, run_id="r"), seed=1)
    assert_same_as_models(tmp_path, ["r"])


def test_runs_with_nothing_readable_give_empty_tables_as_before(tmp_path: Path):
    store_run(tmp_path, "empty", [], seed=2)  # only lines that are not results
    store_run(tmp_path, "none", [], seed=3, damage=False)
    (tmp_path / "none" / "calls.jsonl").unlink()  # created, never placed a call
    for run_id in ("empty", "none"):
        assert_same_as_models(tmp_path, [run_id])
    assert len(load_runs("empty", root=tmp_path).calls) == 0
    with pytest.raises(UsageError, match="no turns column 'txt'"):
        load_runs("empty", root=tmp_path, turn_columns=["txt"])


VALUES = st.one_of(st.none(), st.floats(), st.integers(-2**70, 2**70), st.booleans(), st.text(max_size=5))
#: A chunk of a column: any values, or of one kind (floats, text, small ints) with None among them.
CHUNKS = st.one_of(st.lists(VALUES, max_size=8), st.lists(st.sampled_from([None, 1.5, float("nan")]), max_size=5),
                   st.lists(st.sampled_from([None, "ü", ""]), max_size=5), st.lists(st.integers(0, 9)))


@settings(max_examples=200, deadline=None)
@given(st.lists(CHUNKS, max_size=6), st.integers(0, 2**16))
def test_a_column_packed_in_chunks_gets_the_dtype_pandas_gives_its_values(chunks: list[list], seed: int):
    """The packing under load_runs: chunks of Python values -> Arrow -> the column pandas makes
    of the kept values as records (None apart from NaN, ints beside floats, mixed kinds)."""
    from voicelab.lab.tables import _Table

    rng = random.Random(seed)
    table = _Table(["x"])
    values = [v for chunk in chunks for v in chunk]
    line = 0
    for chunk in chunks:  # one row per stored line, as in the calls table
        table.line.extend(range(line, line + len(chunk)))
        table.lists[0].extend(chunk)
        line += len(chunk)
        table.pack()
    keep = [rng.random() < 0.8 for _ in values]
    expected = pd.DataFrame([{"x": v} for v, k in zip(values, keep, strict=True) if k], columns=["x"])
    pd.testing.assert_frame_equal(table.frame(np.array(keep, dtype=bool)), expected)


# --------------------------------------------------------------------------- the report


def mixed_run(root: Path, run_id: str, calls_per_persona: int) -> list[CallResult]:
    outcomes = (("anna", "mixed"), ("zoë-müller", "mixed"), ("<b>&amp;</b>", "pass"), ("日本の患者", "mixed"))
    plan = RunPlan(tuple(PersonaPlan(p, calls_per_persona, outcome) for p, outcome in outcomes), seed=11, voice=False)
    calls = results(plan, run_id=run_id)
    store_run(root, run_id, calls, seed=4, damage=False)
    return calls


def _text_of(page: str, element_id: str) -> str:
    found = re.search(rf'<p id="{element_id}">(.*?)</p>', page, re.S)
    assert found, f"no #{element_id}"
    return re.sub(r"<[^>]+>", "", found.group(1))


def test_the_pieces_of_a_big_run_list_failures_and_a_sample_and_say_so(tmp_path: Path):
    calls = mixed_run(tmp_path / "runs", "pieces", 700)
    tables = load_runs("pieces", root=tmp_path / "runs", turn_columns=report.TURN_COLUMNS)
    failed = [r for r in calls if not r.success]
    limits = report.Limits(failed=len(failed) - 10, passed=40, transcripts=24, per_persona=2)
    shown = report.shown_calls(tables, limits)
    assert len(shown.failed_rows) == len(failed) - 10 and shown.failed_total == len(failed)
    assert len(shown.passed_rows) == 40 and shown.total == len(calls) == 2800
    page = report.calls_html(tables, limits, [tmp_path / "pieces.calls.csv"])
    assert page.count("<tr") == len(shown.rows) + 1  # and the header
    assert _text_of(page, "vl-calls-shown").startswith(f"Showing {len(shown.rows):,} of 2,800 calls: the first ")
    assert 'href="pieces.calls.csv"' in page
    failures = report.failures_html(tables, limits)
    assert f"{len(failed):,} calls did not succeed" in failures and 'id="vl-failure-reasons"' in failures
    reasons, after = failures.split('id="vl-failure-reasons"', 1)[1].split("</table>", 1)
    counted = sum(int(n.replace(",", "")) for n in re.findall(r"<td>([\d,]+)</td><td>[^<]*</td></tr>", reasons))
    more = re.match(r"<p>\.\.\. and [\d,]+ more reasons \(([\d,]+) calls\)", after)
    counted += int(more.group(1).replace(",", "")) if more else 0
    assert counted == len(failed), "every call that did not succeed is counted by reason"
    assert report.failures_html(tables).count("<tr>") == len(failed) + 1, "no limits: every one listed"
    transcripts = report.transcripts_html(tables, audio="none", limits=limits)
    assert transcripts.count('class="vl-call"') == 4 * 6 == len(report.transcript_rows(tables, limits))
    assert "Showing the transcripts of 24 of 2,800 calls" in _text_of(transcripts, "vl-transcripts-shown")
    for persona in ("anna", "zoë-müller", "<b>&amp;</b>", "日本の患者"):
        mine = [r for r in calls if r.persona_id == persona]
        assert f"{html.escape(persona)}: {sum(r.success for r in mine)}/{len(mine)} passed (transcripts of 6" \
            in transcripts
    assert report.scope_html(tables, limits).startswith('<p id="vl-scope"><b>Every figure and chart below covers')


@pytest.mark.slow
def test_a_report_of_thousands_of_calls_shows_every_failure_and_a_sample_and_the_full_table_beside(tmp_path: Path):
    calls = mixed_run(tmp_path / "runs", "big", 750)
    failed = [r for r in calls if not r.success]
    assert 1000 < len(failed) <= report.REPORT_LIMITS.failed
    path = build_report("big", runs_root=tmp_path / "runs", reports_dir=tmp_path / "reports", audio="none")
    page = path.read_text(encoding="utf-8")
    shown = len(failed) + report.REPORT_LIMITS.passed
    said = _text_of(page, "vl-calls-shown")
    assert said.startswith(f"Showing {shown:,} of 3,000 calls: every one of the {len(failed):,} calls that did "
                           f"not succeed and a sample of {report.REPORT_LIMITS.passed} of the "
                           f"{3000 - len(failed):,} that succeeded"), said
    assert "the full table (every column) is beside this report: big.calls.parquet and big.calls.csv" in said
    assert "Every figure and chart below covers all 3,000 calls" in _text_of(page, "vl-scope")
    assert "Showing the transcripts of 200 of 3,000 calls" in _text_of(page, "vl-transcripts-shown")
    calls_table_html = page.split('id="vl-calls"', 1)[1].split("</table>", 1)[0]
    assert calls_table_html.count("<tr") == shown + 1
    failures = page.split('id="vl-failures"', 1)[1].split("</table>", 1)[0]
    assert failures.count("<tr>") == len(failed) + 1
    for r in failed:
        if r.call_id:
            assert f"<td>{html.escape(r.call_id)}</td>" in failures, r.call_id
    assert "<script" not in page and len(page.encode()) < 5e6
    links = set(re.findall(r'(?:href|src)="([^"#][^"]*)"', page))
    assert {link for link in links if not link.startswith("data:")} == {"big.calls.parquet", "big.calls.csv"}
    parquet, csv = tmp_path / "reports" / "big.calls.parquet", tmp_path / "reports" / "big.calls.csv"
    full = load_runs("big", root=tmp_path / "runs").calls
    beside = pd.read_parquet(parquet)
    assert len(beside) == len(full) == 3000 and list(beside.columns) == list(full.columns)
    assert beside["call_id"].tolist() == full["call_id"].tolist()
    assert len(pd.read_csv(csv)) == 3000
