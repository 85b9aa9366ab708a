"""Recognition biased to a domain: a small language model built at call start from the words the
agent expects, the way a hosted platform uses an agent's `asr.keywords`.

Why a language model and not a grammar or keyword spotting: a grammar (JSGF/FSG) rejects every
sentence it does not list and, in pocketsphinx, decodes several times slower than the default
model; keyword spotting finds the phrases but not the rest of the turn, and the agent's flow
matches phrases *inside* the caller's words. A back-off bigram model over the agent's own
sentences keeps the search small (a few thousand words instead of the default model's whole
vocabulary), so it decodes faster than the default, while the general back-off (the default
model's most common words, with their own unigram probabilities) still lets a caller say
things the agent did not foresee.

The model (ARPA text, built here in pure Python, loaded by pocketsphinx):

- unigrams: (1 - GENERAL_WEIGHT) x the in-domain relative frequency + GENERAL_WEIGHT x the
  general frequency; keywords count KEYWORD_BOOST times;
- bigrams: the in-domain sentences' word pairs, absolutely discounted (D = DISCOUNT), backing
  off to the unigrams with a weight that keeps every history's probabilities summing to 1.

Only words the recogniser's dictionary knows go into the model (a word it cannot pronounce
cannot be recognised); a hyphenated word the dictionary lacks is split ("check-up" -> "check
up"), numbers are spelled out. Where an unknown word sat, the sentence is cut, so no bigram
spans it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

#: Share of unigram probability left to the general back-off words.
GENERAL_WEIGHT = 0.3
#: A keyword (asr.keywords) counts as this many in-domain sentences.
KEYWORD_BOOST = 4
#: Absolute discount of the in-domain bigrams: with counts of 1 or 2, half of a history's mass
#: stays with its seen continuations, half backs off.
DISCOUNT = 0.5
#: How many of the general model's most common words back the domain model off.
GENERAL_WORDS = 5000
#: At most this many words a vocabulary adds to the recogniser's dictionary (espeak-ng says how).
MAX_NEW_WORDS = 200
#: The general words (the bundled en-US model's most frequent unigrams), derived by `write_common`.
COMMON_FILE = Path(__file__).with_name("data") / "en-us-common.txt"

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


@dataclass(frozen=True)
class Vocabulary:
    """What a call's recogniser is biased toward: sentences and phrases the agent expects to hear
    (its intents, its own words, its variables) and keywords boosted above them (`asr.keywords`).
    Plain data, so it travels to a worker process as JSON and names its model by `key`."""

    phrases: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    language: str = "en"
    #: The hash of the content: the same vocabulary reuses a worker's built model.
    key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        blob = json.dumps([self.language, list(self.phrases), list(self.keywords)], ensure_ascii=False)
        object.__setattr__(self, "key", hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16])

    def to_json(self) -> dict:
        return {"phrases": list(self.phrases), "keywords": list(self.keywords), "language": self.language}

    @classmethod
    def from_json(cls, data: dict) -> Vocabulary:
        return cls(phrases=tuple(data.get("phrases") or ()), keywords=tuple(data.get("keywords") or ()),
                   language=str(data.get("language") or "en"))

    def __bool__(self) -> bool:
        return bool(self.phrases or self.keywords)


def number_words(digits: str) -> list[str]:
    """A number as a caller says it: up to 99 as words, longer ones digit by digit (phone
    numbers, codes), the way most people read them out."""
    n = int(digits)
    if len(digits) <= 2 and n < 100:
        if n < 20:
            return [_ONES[n]]
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    return [_ONES[int(d)] for d in digits]


def segments(text: str, known: Callable[[str], bool]) -> list[list[str]]:
    """`text` as runs of dictionary words (lowercased): cut at every word the dictionary lacks, so
    no bigram spans a gap. Hyphenated words the dictionary lacks are split; numbers spelled out."""
    out: list[list[str]] = [[]]
    for token in re.findall(r"[^\W_]+(?:['’-][^\W_]+)*", text.lower()):
        token = token.replace("’", "'")
        pieces: list[str]
        if token.isdecimal():
            pieces = number_words(token)
        elif known(token):
            pieces = [token]
        else:
            pieces = re.split(r"[-']", token) if "-" in token else [token]
            pieces = [p for p in pieces if p]
        for piece in pieces:
            if piece.isdecimal():
                out[-1].extend(number_words(piece))
            elif known(piece):
                out[-1].append(piece)
            elif out[-1]:
                out.append([])
    return [s for s in out if s]


def unknown_words(vocabulary: Vocabulary, known: Callable[[str], bool], limit: int = MAX_NEW_WORDS) -> list[str]:
    """The vocabulary's words the dictionary lacks (letters only: names, product and foreign
    words), in order of first use, at most `limit` (a long prompt has many; names come early)."""
    out: dict[str, None] = {}
    for text in (*vocabulary.keywords, *vocabulary.phrases):
        for token in re.findall(r"[^\W_]+(?:['’-][^\W_]+)*", text.lower()):
            token = token.replace("’", "'")
            if known(token):
                continue
            for piece in token.split("-"):
                if re.fullmatch(r"[^\W\d_]+(?:'[^\W\d_]+)?", piece) and not known(piece):
                    out.setdefault(piece)
                    if len(out) >= limit:
                        return list(out)
    return list(out)


#: espeak-ng's IPA (its `--ipa --sep=_` phonemes, stress marks dropped) -> the CMU phone set of
#: pocketsphinx's en-US model. Foreign sounds map to their nearest English phone, so a German or
#: Polish name is heard as an English speaker would say it.
IPA_TO_CMU: dict[str, str] = {
    "iː": "IY", "i": "IY", "ɪ": "IH", "ᵻ": "IH", "e": "EY", "eː": "EY", "eɪ": "EY", "ɛ": "EH", "ɛː": "EH",
    "æ": "AE", "a": "AA", "aː": "AA", "ɑ": "AA", "ɑː": "AA", "ɒ": "AA", "ɔ": "AO", "ɔː": "AO", "o": "OW",
    "oː": "OW", "oʊ": "OW", "əʊ": "OW", "ʊ": "UH", "u": "UW", "uː": "UW", "ʌ": "AH", "ə": "AH", "ɐ": "AH",
    "ɜ": "ER", "ɜː": "ER", "ɚ": "ER", "ɝ": "ER", "aɪ": "AY", "aʊ": "AW", "ɔɪ": "OY", "ɔø": "OY", "y": "UW",
    "yː": "UW", "ʏ": "UH", "ø": "ER", "øː": "ER", "œ": "ER", "ɪə": "IY AH", "iə": "IY AH", "eə": "EH R",
    "ʊə": "UH R", "aɪə": "AY ER", "aɪɚ": "AY ER", "ɔːɹ": "AO R", "ɑːɹ": "AA R", "oːɹ": "AO R", "ɛɹ": "EH R",
    "ɪɹ": "IH R", "ʊɹ": "UH R", "əl": "AH L", "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G",
    "ɡ": "G", "f": "F", "v": "V", "θ": "TH", "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH", "ʒ": "ZH", "h": "HH",
    "tʃ": "CH", "dʒ": "JH", "m": "M", "n": "N", "ŋ": "NG", "l": "L", "ɫ": "L", "r": "R", "ɹ": "R", "ʁ": "R",
    "ɾ": "T", "j": "Y", "w": "W", "x": "HH", "ç": "HH", "ts": "T S", "pf": "P F", "ʔ": "", "n̩": "AH N",
    "l̩": "AH L", "m̩": "AH M",
}


def cmu_phones(ipa: str) -> str | None:
    """One word of `espeak-ng --ipa --sep=_` output as CMU phones; None when a sound has no mapping."""
    phones = []
    for unit in ipa.split("_"):
        unit = unit.replace("ˈ", "").replace("ˌ", "").replace("\u200d", "")
        if not unit:
            continue
        mapped = IPA_TO_CMU.get(unit, IPA_TO_CMU.get(unit.replace("ː", "")))
        if mapped is None:  # an unlisted cluster: sound by sound
            parts = [IPA_TO_CMU.get(c) for c in unit.replace("ː", "")]
            if any(p is None for p in parts):
                return None
            mapped = " ".join(p for p in parts if p)
        if mapped:
            phones.append(mapped)
    return " ".join(phones) or None


def pronunciations(words: Sequence[str], voice: str) -> dict[str, str]:
    """CMU phones for words the recogniser's dictionary lacks, from espeak-ng's own pronunciation
    in `voice` (the language's), so a name or product term in the vocabulary can be heard at all.
    One espeak-ng run for all; {} when it is missing or its output does not line up word by word."""
    import shutil
    import subprocess

    exe = shutil.which("espeak-ng")
    if exe is None or not words:
        return {}
    def ipa(text: str) -> list[str]:
        out = subprocess.run([exe, "-q", "--ipa", "--sep=_", "-v", voice, text], capture_output=True, check=False,
                             text=True)
        return out.stdout.split() if out.returncode == 0 else []

    spoken = ipa(" ".join(words))
    if len(spoken) != len(words):  # espeak-ng joined or split some: ask word by word (few)
        spoken = [(said[0] if len(said := ipa(w)) == 1 else "") for w in words[:50]]
    found = {}
    for word, sounds in zip(words, spoken, strict=False):
        phones = cmu_phones(sounds) if sounds else None
        if phones:
            found[word] = phones
    return found


def _log10(p: float) -> float:
    return math.log10(p) if p > 0 else -99.0


def domain_arpa(vocabulary: Vocabulary, known: Callable[[str], bool], general: Sequence[tuple[str, float]]) -> str:
    """The ARPA text of the biased model: the vocabulary's sentences as back-off bigrams over
    unigrams mixed with `general` (word, probability) pairs; only words `known` says the
    recogniser can pronounce. Deterministic: the same inputs give the same text. (Mixing in the
    general model's own bigrams among the domain's words was tried: WER 0.42-0.45 against 0.41
    without, on the English lines of benchmarks/asr_bias.py.)"""
    unigrams: Counter[str] = Counter()
    bigrams: Counter[tuple[str, str]] = Counter()
    weighted = [(p, 1) for p in vocabulary.phrases] + [(k, KEYWORD_BOOST) for k in vocabulary.keywords]
    for text, weight in weighted:
        for run in segments(text, known):
            words = ["<s>", *run, "</s>"]
            for w in words[1:]:
                unigrams[w] += weight
            for pair in zip(words, words[1:], strict=False):
                bigrams[pair] += weight
    general = [(w, p) for w, p in general if w not in ("<s>", "</s>", "<unk>") and known(w)]
    general_total = sum(p for _, p in general) or 1.0
    domain_total = sum(unigrams.values())
    domain_share = 1.0 - GENERAL_WEIGHT if domain_total else 0.0
    prob: dict[str, float] = {}
    for w, c in unigrams.items():
        prob[w] = domain_share * c / domain_total
    for w, p in general:
        prob[w] = prob.get(w, 0.0) + (1.0 - domain_share) * p / general_total
    if "</s>" not in prob:  # no in-domain sentence: an utterance must still be able to end
        prob["</s>"] = 0.05
    norm = sum(prob.values())
    prob = {w: p / norm for w, p in prob.items()}
    # bigrams, absolutely discounted; each history's back-off weight keeps its distribution whole
    by_history: dict[str, dict[str, int]] = {}
    for (h, w), c in bigrams.items():
        by_history.setdefault(h, {})[w] = c
    bigram_lines: list[str] = []
    backoff: dict[str, float] = {}
    for h in sorted(by_history):
        seen = by_history[h]
        total = sum(seen.values())
        left = DISCOUNT * len(seen) / total
        seen_uni = sum(prob.get(w, 0.0) for w in seen)
        for w in sorted(seen):
            bigram_lines.append(f"{_log10((seen[w] - DISCOUNT) / total):.4f} {h} {w}")
        backoff[h] = left / max(1e-9, 1.0 - seen_uni)
    lines = ["\\data\\", f"ngram 1={len(prob) + 1}", f"ngram 2={len(bigram_lines)}", "", "\\1-grams:",
             f"-99.0000 <s> {_log10(backoff.get('<s>', 1.0)):.4f}"]
    for w in sorted(prob):
        bo = f" {_log10(backoff[w]):.4f}" if w in backoff else ""
        lines.append(f"{_log10(prob[w]):.4f} {w}{bo}")
    lines += ["", "\\2-grams:", *bigram_lines, "", "\\end\\", ""]
    return "\n".join(lines)


@lru_cache(maxsize=4)
def common_words(limit: int = GENERAL_WORDS) -> tuple[tuple[str, float], ...]:
    """The general back-off: the bundled model's `limit` most frequent words with their
    probabilities (data/en-us-common.txt; empty when the file is missing)."""
    if not COMMON_FILE.exists():
        return ()
    out = []
    for line in COMMON_FILE.read_text(encoding="utf-8").splitlines()[:limit]:
        word, _, logp = line.partition("\t")
        if word and logp:
            out.append((word, 10 ** float(logp)))
    return tuple(out)


def write_common(limit: int = 10000) -> Path:
    """Derive data/en-us-common.txt from the model pocketsphinx ships (run once, by a developer:
    `python -m voicelab.audio.bias`): the `limit` dictionary words the model finds most
    probable, tab, log10 of that unigram probability. (Its own ARPA export crashes in
    pocketsphinx 5.1, so each word's probability is asked for instead: 0.3 s for all.)"""
    import os

    from pocketsphinx import NGramModel, get_model_path

    folder = os.path.join(get_model_path(), "en-us")
    lm = NGramModel.readfile(os.path.join(folder, "en-us.lm.bin"))
    with open(os.path.join(folder, "cmudict-en-us.dict"), encoding="utf-8") as f:
        words = list(dict.fromkeys(line.split(maxsplit=1)[0] for line in f if line.strip()))
    scored = [(w, lm.prob([w])) for w in words if re.fullmatch(r"[a-z][a-z']*", w)]
    floor = min(score for _, score in scored)
    scored = sorted(((w, score) for w, score in scored if score > floor), key=lambda g: (-g[1], g[0]))
    base = math.log10(1.0001)  # the model's log base (pocketsphinx's logmath default)
    COMMON_FILE.parent.mkdir(exist_ok=True)
    COMMON_FILE.write_text("".join(f"{w}\t{score * base:.4f}\n" for w, score in scored[:limit]), encoding="utf-8")
    return COMMON_FILE


if __name__ == "__main__":
    print(write_common())
