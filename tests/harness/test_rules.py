"""The pure rules of a call, one table each: how a disconnect ends a call, what a call sends
first, when the local backend accepts a conversation, how long a call may last, which callers
exist and where they may run, and what the driver does with each event."""

from __future__ import annotations

import pytest

from voicelab.harness import runners
from voicelab.harness.call import Dialogue
from voicelab.harness.connection import describe_disconnect, initiation_data
from voicelab.harness.kinds import KINDS
from voicelab.harness.transcript import TranscriptRecorder
from voicelab.local.handshake import Accepted, Refused, handshake, parse_first_message
from voicelab.spec import errors
from voicelab.spec.datasets import time_limit
from voicelab.spec.errors import UsageError
from voicelab.spec.models import AgentSaid, CallerHeard, Disconnected, HangUp
from voicelab.spec.script import Action

ANNA = {"first_name": "Anna", "last_name": "Kowalska", "phone_number": "+48601234567",
        "product_name": "Premium Gym Membership", "chargeback_reason": "duplicate charge"}


@pytest.mark.parametrize(("reason", "code", "close_reason", "message", "end_reason", "error_says"), [
    ("agent", 1000, "end_call tool was called.", None, "agent_ended", None),
    ("user", None, None, None, "caller_ended", None),
    ("error", 1006, "", "no close frame", "disconnected", "dropped mid-call"),
    ("error", 1008, "Override for field 'language' is not allowed by config.", None, "error",
     "allow 'language' under Security > Overrides"),
    ("error", 1008, "Could not authorize the conversation", None, "error", "ELEVENLABS_REQUIRES_AUTH=true"),
    ("error", 1008, "Agent not found", None, "error", "check the agent id"),
    ("error", 1002, "llm_timeout", None, "error", "code 1002: llm_timeout"),
    ("error", None, None, "Connection refused", "error", "Connection refused"),
])
def test_a_disconnect_becomes_an_end_reason_and_a_readable_error(reason, code, close_reason, message, end_reason,
                                                                  error_says):
    got_reason, error = describe_disconnect(reason, code, close_reason, message)
    assert got_reason == end_reason
    assert error is None if error_says is None else error_says in error


@pytest.mark.parametrize(("overrides", "persona_id", "expected_agent_override"), [
    ([], "anna-double-charge", None),
    (["language"], "jonas-de-entwickler", {"language": "de"}),
    (["first_message"], "anna-double-charge", {"first_message": "Hello, this is Nora from Northbank's card disputes "
                                                                "team. Am I speaking with Anna Kowalska?"}),
    (["prompt"], "anna-double-charge", "prompt-rendered"),
])
def test_a_call_sends_its_variables_and_only_the_overrides_the_agent_lists(dataset, overrides, persona_id,
                                                                           expected_agent_override):
    request = dataset.request(persona_id)
    request = request.model_copy(update={"agent": request.agent.model_copy(update={"overrides": overrides})})
    data = initiation_data(request)
    assert data.dynamic_variables == request.persona.variables
    agent_override = data.conversation_config_override.get("agent")
    if expected_agent_override == "prompt-rendered":
        assert "{{" not in agent_override["prompt"]["prompt"] and "Anna Kowalska" in agent_override["prompt"]["prompt"]
    else:
        assert agent_override == expected_agent_override


def init(**fields) -> dict:
    return {"type": "conversation_initiation_client_data", "dynamic_variables": ANNA, **fields}


@pytest.mark.parametrize(("message", "query", "signature_ok", "expected"), [
    (init(), {"agent_id": "chargeback"}, None, "accepted"),
    (init(), {"agent_id": "nobody"}, None, Refused(1008, "Agent not found")),
    (init(), {"agent_id": "chargeback"}, False, Refused(1008, "Could not authorize the conversation")),
    (init(), {"agent_id": "chargeback"}, True, "accepted"),
    (init(dynamic_variables={"first_name": "Anna"}), {"agent_id": "chargeback"}, None,
     ("refused after the metadata", "missing_dynamic_variable",
      "Missing required dynamic variables: chargeback_reason, last_name, phone_number, product_name")),
    (init(dynamic_variables=["a", "b"]), {"agent_id": "chargeback"}, None,
     Refused(1008, "invalid_message: dynamic_variables must be an object")),
    (init(conversation_config_override="everything"), {"agent_id": "chargeback"}, None,
     Refused(1008, "invalid_message: conversation_config_override must be an object")),
])
def test_the_backend_accepts_or_refuses_a_conversation(dataset, message, query, signature_ok, expected):
    got = handshake(message, query, dataset.agents, signature_ok=signature_ok)
    if expected == "accepted":
        assert isinstance(got, Accepted) and got.agent.id == "chargeback" and got.refusal is None
        assert got.variables == ANNA and got.language == "en"
    elif isinstance(expected, tuple):  # accepted, then refused with an error event of this type
        assert isinstance(got, Accepted) and (got.refusal_type, got.refusal) == expected[1:]
    else:
        assert got == expected


@pytest.mark.parametrize(("raw", "refused"), [
    ("not json", "invalid_message: the first message must be JSON"),
    ("[1, 2]", "missing_fields: expected conversation_initiation_client_data first"),
    ('{"type": "user_message", "text": "hi"}', "missing_fields: expected conversation_initiation_client_data first"),
    (None, "invalid_message: the first message must be JSON"),
])
def test_the_first_message_must_be_the_initiation(raw, refused):
    assert parse_first_message(raw) == Refused(1008, refused)


def test_a_refused_override_is_decided_up_front_and_sent_after_the_metadata(dataset):
    agents = {**dataset.agents}
    agents["chargeback"] = agents["chargeback"].model_copy(update={"platform": agents["chargeback"].platform.model_copy(
        update={"allowed_overrides": ["first_message"]})})
    got = handshake(init(conversation_config_override={"agent": {"language": "de"}}), {"agent_id": "chargeback"},
                    agents)
    assert isinstance(got, Accepted) and got.refusal == "Override for field 'language' is not allowed by config."
    assert got.language == "de"


@pytest.mark.parametrize(("timeout_s", "max_duration_s", "run_default", "limit"), [
    (None, None, 60, 60),       # nothing set: the run's default
    (20, None, 60, 20),         # the persona's own limit wins over the run's
    (None, 90, 60, 90),         # never cut a call before the persona's own expectation allows
    (None, 30, 60, 60),
    (20, 75, 60, 75),
])
def test_the_time_limit_of_a_call(dataset, timeout_s, max_duration_s, run_default, limit):
    persona = dataset.persona("anna-double-charge")
    persona = persona.model_copy(update={
        "caller": persona.caller.model_copy(update={"timeout_s": timeout_s}),
        "expect": persona.expect.model_copy(update={"max_duration_s": max_duration_s})})
    assert time_limit(persona, run_default) == limit


def test_the_bundled_personas_get_their_time_limits_from_the_one_rule(dataset):
    assert dataset.request("anna-double-charge").max_duration_s == 150  # expect.max_duration_s: 150
    assert dataset.request("silent-line-chargeback").max_duration_s == 60  # the default: its agent ends the call


@pytest.mark.parametrize(("caller", "batch", "console", "places_voice"), [
    ("scripted", True, True, True),
    ("human", False, True, True),
    ("platform", True, False, False),
    ("phone", True, False, True),
])
def test_each_kind_of_caller_is_one_registry_entry(caller, batch, console, places_voice):
    runner = runners.runner(caller)
    assert runner.name == caller and runner.help
    assert (caller in runners.names(batch=True)) is batch
    assert (caller in runners.names(console=True)) is console
    assert ("voice" in runner.modes) is places_voice
    kind = KINDS[caller]  # the light table the command line reads is the runner's own description
    assert (kind.name, kind.help, kind.modes, kind.batch, kind.console) == \
        (runner.name, runner.help, runner.modes, runner.batch, runner.console)


def test_every_kind_of_caller_has_its_runner():
    assert list(runners.RUNNERS) == list(KINDS)


def test_the_cli_and_the_batch_offer_the_registry(dataset):
    from voicelab.surfaces.cli.main import build_parser

    parser = build_parser()
    for name in runners.RUNNERS:
        assert parser.parse_args(["call", "--persona", "x", "--caller", name]).caller == name
        if name in runners.names(batch=True):
            assert parser.parse_args(["run", "--caller", name]).caller == name
        else:
            with pytest.raises(SystemExit):
                parser.parse_args(["run", "--caller", name])
    with pytest.raises(UsageError, match="unknown caller 'robot'"):
        runners.runner("robot")
    with pytest.raises(UsageError, match="unknown caller 'robot'"):  # a name, checked where a call is placed
        runners.preflight([dataset.request("anna-double-charge", caller="robot")])


class Says:
    """A turn policy that answers every agent turn with the next planned action."""

    def __init__(self, *actions: Action) -> None:
        self.actions = list(actions)

    def on_agent_turn(self, text: str) -> Action:
        return self.actions.pop(0) if self.actions else Action()


@pytest.mark.parametrize(("events", "policy", "end_reason", "error", "speakers", "last_decision"), [
    ([AgentSaid("Hello", 0.1)], Says(Action(say=["Hi"])), None, None, ["agent"], (None, ["Hi"], False)),
    ([AgentSaid("Bye", 0.1)], Says(Action(say=["Bye"], hang_up=True)), None, None, ["agent"], (None, ["Bye"], True)),
    ([AgentSaid("Hello", 0.1)], None, None, None, ["agent"], (None, [], False)),
    ([CallerHeard("hello there", 0.5)], None, None, None, ["user"], (None, [], False)),
    ([Disconnected("agent_ended")], None, "agent_ended", None, [], (None, [], False)),
    ([HangUp(), Disconnected("error", "late")], None, "caller_ended", None, [], (None, [], False)),
    ([Disconnected("disconnected", "dropped")], None, "disconnected", "dropped", [], (None, [], False)),
])
def test_the_driver_decides_each_event(dataset, events, policy, end_reason, error, speakers, last_decision):
    recorder = TranscriptRecorder()
    dialogue = Dialogue(dataset.request("anna-double-charge"), policy, recorder)
    for event in events:
        decision = dialogue.handle(event)
    assert decision == last_decision
    assert (dialogue.end_reason, dialogue.error) == (end_reason, error), "the first ending wins"
    assert [e.speaker for e in recorder.entries()] == speakers


def test_the_agents_context_is_sent_once_after_its_first_turn(dataset):
    dialogue = Dialogue(dataset.request("jonas-de-entwickler"), None, TranscriptRecorder())
    first = dialogue.handle(AgentSaid("Hallo", 0.1))
    second = dialogue.handle(AgentSaid("Noch da?", 3.0))
    assert first[0] and "Webwerk GmbH" in first[0] and second[0] is None


def test_every_error_is_exported_and_has_one_root():
    leaves = [getattr(errors, name) for name in errors.__all__ if name != "VoiceLabError"]
    assert all(issubclass(leaf, errors.VoiceLabError) for leaf in leaves)
    def descendants(cls: type) -> set[str]:
        return {name for sub in cls.__subclasses__() for name in {sub.__name__} | descendants(sub)}

    assert descendants(errors.VoiceLabError) == set(errors.__all__) - {"VoiceLabError"}
    # each sub-leaf is drawn in the module's tree under its parent
    for name in ("InvalidField", "RunNotFound"):
        assert f"└── {name}" in errors.__doc__
    assert "├── StoreNotWritable" in errors.__doc__
    assert not hasattr(errors.VoiceLabError, "retryable")
