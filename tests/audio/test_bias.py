"""Recognition biased to a domain (voicelab/audio/bias.py and the Transcriber's `bias`): the
model's text is a well-formed back-off model, and biased toward an agent's vocabulary the
recogniser hears in-domain speech better than its default model does."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab.audio.bias import Vocabulary, cmu_phones, domain_arpa, number_words, segments, unknown_words

GENERAL = [("the", 0.05), ("i", 0.04), ("a", 0.03), ("want", 0.01), ("to", 0.04), ("money", 0.001)]


def parse(arpa: str) -> tuple[dict[str, tuple[float, float]], dict[tuple[str, str], float]]:
    uni: dict[str, tuple[float, float]] = {}
    bi: dict[tuple[str, str], float] = {}
    section = None
    for line in arpa.splitlines():
        if line.startswith("\\"):
            section = line
            continue
        parts = line.split()
        if section == "\\1-grams:" and parts:
            uni[parts[1]] = (float(parts[0]), float(parts[2]) if len(parts) > 2 else 0.0)
        elif section == "\\2-grams:" and parts:
            bi[(parts[1], parts[2])] = float(parts[0])
    return uni, bi


def conditional_sums(arpa: str) -> dict[str, float]:
    """For every history: the sum over the vocabulary of P(w | h), by the ARPA back-off rule."""
    uni, bi = parse(arpa)
    seen: dict[str, dict[str, float]] = defaultdict(dict)
    for (h, w), logp in bi.items():
        seen[h][w] = 10 ** logp
    out = {}
    for h, (_, logbo) in uni.items():
        if h == "</s>":
            continue
        total = 0.0
        for w, (logp, _) in uni.items():
            if w == "<s>":
                continue
            total += seen[h].get(w, 10 ** logbo * 10 ** logp)
        out[h] = total
    return out


def test_words_the_dictionary_lacks_split_or_cut_a_sentence() -> None:
    known = {"check", "up", "a", "book", "please", "for", "at", "ten"}.__contains__
    assert segments("Book a check-up, please.", known) == [["book", "a", "check", "up", "please"]]
    assert segments("a zorblax for ten", known) == [["a"], ["for", "ten"]]
    assert segments("at 10", known) == [["at", "ten"]]
    assert number_words("42") == ["forty", "two"]
    assert number_words("0601") == ["zero", "six", "zero", "one"]


def test_words_the_dictionary_lacks_get_espeak_s_pronunciation_in_cmu_phones() -> None:
    known = {"mrs", "booked", "a", "check", "up", "with", "dr"}.__contains__
    vocab = Vocabulary(phrases=("Mrs Kowalska booked a check-up with Dr Nowak.", "kowalska's 42 €"),
                       keywords=("Northbank",))
    assert unknown_words(vocab, known) == ["northbank", "kowalska", "nowak", "kowalska's"]
    assert unknown_words(vocab, known, limit=2) == ["northbank", "kowalska"]
    assert cmu_phones("k_ˈaʊ_ɔ_l_s_k_ə") == "K AW AO L S K AH"
    assert cmu_phones("n_ˈɔːɹ_θ_b_æ_ŋ_k") == "N AO R TH B AE NG K"
    assert cmu_phones("ts_ˈɑː_n") == "T S AA N"
    assert cmu_phones("q_a") is None  # a sound without a mapping: no pronunciation rather than a wrong one


def test_the_model_is_a_proper_back_off_model() -> None:
    vocab = Vocabulary(phrases=("I want a refund", "want the money back"), keywords=("refund",))
    arpa = domain_arpa(vocab, lambda w: True, GENERAL)
    uni, bi = parse(arpa)
    assert math.isclose(sum(10 ** p for w, (p, _) in uni.items() if w != "<s>"), 1.0, rel_tol=1e-3)
    assert ("want", "a") in bi and ("<s>", "i") in bi
    for history, total in conditional_sums(arpa).items():
        assert math.isclose(total, 1.0, rel_tol=2e-3), history
    # a keyword weighs more than a word said once
    assert uni["refund"][0] > uni["money"][0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=6), st.lists(st.text(max_size=15), max_size=3))
def test_any_vocabulary_gives_a_normalised_model(phrases: list[str], keywords: list[str]) -> None:
    arpa = domain_arpa(Vocabulary(phrases=tuple(phrases), keywords=tuple(keywords)), lambda w: True, GENERAL)
    uni, _ = parse(arpa)
    assert "</s>" in uni
    assert math.isclose(sum(10 ** p for w, (p, _) in uni.items() if w != "<s>"), 1.0, rel_tol=1e-3)
    for history, total in conditional_sums(arpa).items():
        assert math.isclose(total, 1.0, rel_tol=2e-3), history
    assert arpa == domain_arpa(Vocabulary(phrases=tuple(phrases), keywords=tuple(keywords)), lambda w: True,
                               GENERAL)


def test_a_vocabulary_travels_as_json() -> None:
    vocab = Vocabulary(phrases=("Zahnschmerzen, bitte", "check-up"), keywords=("Smile Dental",), language="de")
    back = Vocabulary.from_json(vocab.to_json())
    assert back == vocab and back.key == vocab.key
    assert not Vocabulary()


@pytest.mark.slow
def test_biased_toward_the_agent_the_recogniser_hears_in_domain_speech_better() -> None:
    """A few in-domain caller sentences, synthesised as a voice call does: biased WER below the
    default model's, compared within this run (never a timing)."""
    from voicelab.audio.speech import Transcriber, TranscriberPool, speak, voice_for
    from voicelab.local.vocabulary import agent_vocabulary
    from voicelab.spec.datasets import load_dataset
    from voicelab.spec.transcripts import word_error_rate

    agent = load_dataset().agents["chargeback"]
    vocab = agent_vocabulary(agent, {"first_name": "Anna", "last_name": "Kowalska",
                                     "product_name": "Premium Gym Membership"})
    sentences = ["Yes, this is Anna.", "Yes, please keep the dispute open.", "I want to talk to a real person.",
                 "No, that's all, thank you."]
    transcriber = Transcriber()
    default, biased, heard = 0.0, 0.0, []
    for sentence in sentences:
        pcm = speak(sentence, voice_for("someone", "en")) + b"\0" * 16000
        transcriber.bias(None)
        default += word_error_rate(sentence, transcriber.transcribe(pcm))
        transcriber.bias(vocab)
        heard.append(transcriber.transcribe(pcm))
        biased += word_error_rate(sentence, heard[-1])
    assert biased < default, (biased, default, heard)
    pool = TranscriberPool(workers=1)  # a worker hears the same, the vocabulary sent with the job
    try:
        pool.prepare(vocab)  # built ahead, as a call's start does
        assert pool.submit(pcm, vocab).result(timeout=60) == heard[-1]
    finally:
        pool.close()
