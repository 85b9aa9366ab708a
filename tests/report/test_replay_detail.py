"""The report lists a replay's differences from its recording one per line (the `recording`
check's clauses, spec/replay.py), escaped like every other text of the page."""

from __future__ import annotations

from voicelab.report.build import _check_detail_html
from voicelab.spec.models import Check


def test_a_replays_differences_are_a_list_and_other_details_stay_text():
    replay = Check(name="recording: conv_1", passed=False,
                   detail='after caller turn 1 ("<Yes>"): recorded tool call lookup_dispute no longer made; '
                          "recorded end not reached: the agent ended the recorded call, and now the caller ended it")
    assert _check_detail_html(replay) == (
        '<ul class="vl-replay"><li>after caller turn 1 (&quot;&lt;Yes&gt;&quot;): recorded tool call lookup_dispute '
        "no longer made</li><li>recorded end not reached: the agent ended the recorded call, and now the caller "
        "ended it</li></ul>")
    same = Check(name="recording: conv_1", passed=True, detail="the agent took the recorded path: 2 caller turns")
    assert _check_detail_html(same) == "the agent took the recorded path: 2 caller turns"
    assert _check_detail_html(Check(name="agent_says: a; b", passed=True, detail="x; <y>")) == "x; &lt;y&gt;"
