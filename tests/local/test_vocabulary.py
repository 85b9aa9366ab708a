"""The vocabulary the local agent biases its recognition toward (voicelab/local/vocabulary.py):
built from the agent's flow, tools, variables and asr keywords, never from the persona."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab.local.agent_config import applied, checked_body
from voicelab.local.vocabulary import agent_vocabulary
from voicelab.spec.datasets import load_dataset
from voicelab.spec.models import AgentSpec, Flow, FlowStep, Intent, ReplyRule


def chargeback():
    dataset = load_dataset()
    return dataset, dataset.agents["chargeback"]


def test_the_flow_tools_variables_and_keywords_are_in_it() -> None:
    _, agent = chargeback()
    agent = agent.model_copy(update={"platform": agent.platform.model_copy(update={"asr_keywords": ["Northbank"]})})
    vocab = agent_vocabulary(agent, {"first_name": "Anna", "product_name": "Premium Gym Membership",
                                     "secret__token": "hunter2"})
    assert "wrong number" in vocab.phrases  # an intent phrase
    assert "lookup dispute" in vocab.phrases  # a tool name, as words
    assert "Premium Gym Membership" in vocab.phrases  # a variable's value
    assert "goodbye" in vocab.phrases  # the language's words
    assert vocab.keywords == ("Northbank",)
    assert not any("hunter2" in p for p in vocab.phrases)  # secrets are not words to hear
    assert not any("{{" in p for p in vocab.phrases)  # the agent's texts with the variables filled in


def test_the_persona_s_lines_never_change_it() -> None:
    dataset, agent = chargeback()
    persona = dataset.personas["anna-double-charge"]
    before = agent_vocabulary(agent, persona.variables, persona.language)
    other_lines = persona.caller.model_copy(update={
        "replies": [ReplyRule(when=["reason"], say="Zebras quarrelled over my xylophone invoice.")],
        "fallback": "Quokka?"})
    changed = persona.model_copy(update={"caller": other_lines, "summary": "Someone else entirely."})
    after = agent_vocabulary(agent, changed.variables, changed.language)
    assert after == before and after.key == before.key
    said = {r.say for r in persona.caller.replies}
    assert not said & set(before.phrases)  # none of the persona's own lines is in it


def test_a_pushed_config_sets_the_keywords_and_get_agent_would_report_them() -> None:
    _, agent = chargeback()
    pushed = checked_body({"conversation_config": {"asr": {"keywords": ["chargeback", " ", "Kowalska"]}}},
                          create=False)
    spec = applied(agent, pushed)
    assert spec.platform.asr_keywords == ["chargeback", "Kowalska"]
    assert agent_vocabulary(spec, {}).keywords == ("chargeback", "Kowalska")


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@st.composite
def agent_specs(draw: st.DrawFn) -> AgentSpec:
    steps = {}
    names = [f"s{i}" for i in range(draw(st.integers(1, 4)))]
    for name in names:
        intents = [Intent(when=draw(st.lists(texts, min_size=1, max_size=3)), goto=draw(st.sampled_from(names)))
                   for _ in range(draw(st.integers(0, 3)))]
        steps[name] = FlowStep(say=draw(texts | st.dictionaries(st.sampled_from(["en", "de"]), texts, max_size=2)),
                               intents=intents, reprompt=draw(st.none() | texts), end_call=True)
    return AgentSpec(id="a", name="a", first_message=draw(texts), prompt=draw(texts),
                     flow=Flow(start=names[0], steps=steps))


@settings(max_examples=60, deadline=None)
@given(agent_specs(), st.dictionaries(st.text(max_size=10), texts, max_size=4), st.sampled_from(["en", "de", "pl"]))
def test_any_agent_spec_gives_a_deterministic_vocabulary(agent: AgentSpec, variables: dict[str, str],
                                                         language: str) -> None:
    vocab = agent_vocabulary(agent, variables, language)
    again = agent_vocabulary(agent.model_copy(deep=True), dict(variables), language)
    assert vocab == again and vocab.key == again.key
    assert all(p.strip() == p and p for p in vocab.phrases)  # no empty or padded phrase
    assert len(set(vocab.phrases)) == len(vocab.phrases)
    assert "yes" in vocab.phrases  # every call hears yes and no, whatever its flow
