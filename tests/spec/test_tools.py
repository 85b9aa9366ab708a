"""Tools in the files: mocks and expected calls validated against the tool they name, and the
two accounts of a call's tool calls (live and history) compared."""

from __future__ import annotations

import pytest

from voicelab.spec.errors import DatasetError

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


@pytest.mark.parametrize(("extra", "words"), [
    ("    tools:\n      open_dispute: {result: ok}\n", "mocks 'open_dispute', which is not a tool of agent 'disputes'"),
    ("    expect:\n      agent_calls: [{tool: refund}]\n", "expects a call of 'refund'"),
    ("    expect:\n      agent_calls: [{tool: lookup_dispute, args: {phone: x}}]\n", "has no parameter 'phone'"),
    ("    expect:\n      agent_never_calls: [teleport]\n", "neither a tool of agent 'disputes' nor a system tool"),
    ("    tools:\n      lookup_dispute: {result: ok, error: down}\n", "a result or an error, not both"),
])
def test_mocks_and_expected_calls_are_validated(world, extra, words):
    with pytest.raises(DatasetError, match=words):
        world(ann=extra)


# --------------------------------------------------------------------------- webhook and system tools


def test_differences_between_the_call_and_the_history_are_named():
    from voicelab.spec.models import ToolCallRecord
    from voicelab.spec.tool_calls import differences

    live = [ToolCallRecord(tool="lookup_dispute", id="t1", args={"phone_number": "+48"}),
            ToolCallRecord(tool="confirm_dispute", id="t2", args={"decision": "keep"})]
    history = [{"id": "t1", "tool": "lookup_dispute", "args": {"phone_number": "+49"}, "is_error": False},
               {"id": "t3", "tool": "transfer_to_number", "args": {}, "is_error": False}]
    said = differences(live, history)
    assert len(said) == 3
    assert "lookup_dispute (t1): the history's arguments" in said[0]
    assert said[1] == "confirm_dispute (t2) was seen during the call but is not in the history"
    assert said[2] == "transfer_to_number (t3) is in the history but was not seen during the call"
