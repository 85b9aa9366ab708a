"""The tools table: tool calls joined to their calls and turns, and shown in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import AGENTS

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


def test_the_tools_table_joins_calls_and_turns_and_the_report_shows_them(tmp_path: Path, local_backend):
    from voicelab.lab.batch import run_batch
    from voicelab.lab.tables import load_runs
    from voicelab.report import build as report

    from ..conftest import PERSONAS

    backend = local_backend()
    run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge", "hanna-confirm-fails",
                                                       "sven-wrong-person"],
              runs_root=str(tmp_path), run_id="tt", progress=False, local_url=backend.base_url)
    tables = load_runs("tt", root=tmp_path)
    anna = tables.tools[tables.tools["persona_id"] == "anna-double-charge"]
    assert list(anna["tool"]) == ["lookup_dispute", "confirm_dispute", "end_call"]
    looked_up = anna.iloc[0]
    turn = tables.turns[(tables.turns["call_id"] == looked_up["call_id"]) & (tables.turns["turn"] == looked_up["turn"])]
    assert turn.iloc[0]["text"] == "Yes, this is Anna."  # the lookup follows the caller's "yes"
    assert json.loads(looked_up["args"]) == {"phone_number": "+48601234567"}
    summary = tables.tools_summary().set_index("persona_id")
    assert summary.loc["hanna-confirm-fails", "tools_failed"] == "confirm_dispute ×1"
    assert summary.loc["sven-wrong-person", "tools_called"] == "end_call ×1"
    assert "lookup_dispute" in summary.loc["sven-wrong-person", "never_called"]
    assert "transfer_to_number" in summary.loc["anna-double-charge", "never_called"]
    page = report.tools_html(tables) + report.transcripts_html(tables, audio="none")
    assert 'id="vl-tools"' in page and "confirm_dispute ×1" in page
    assert "<b>tool</b> confirm_dispute(phone_number=+48600111222, decision=keep)" in page
    assert "error: &quot;core banking timeout&quot;" in page
