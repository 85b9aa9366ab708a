"""Three accounts of what the agent said, and where they disagree (the `transcripts_agree` check).

A voice call leaves three accounts of each agent turn: the live events the client received
(`agent_response`, the CallResult's `transcript`), the conversation the backend stored
(GET /v1/convai/conversations/{id} after the call, `stored_transcript`), and voicelab's own
recognition of the agent audio it recorded (`audio_text` on each agent turn). A text call has
the first two. When two accounts agree and the third does not, the third is the one in error
("the odd one out"): the live events (a client or event-stream fault), the stored record (the
platform kept something else), or the audio (the agent's speech said something else than its
text, or voicelab misheard it). That is what tells an agent error from a transcription error.

Pure functions of texts, so the check, the tables and the report agree, and the comparison can
be property-tested. Texts are compared by word error rate (`word_error_rate`); the two text
accounts against `max_wer` (they should be copies), the audio against `max_audio_wer`, because
a recogniser mishears even a perfect recording (pocketsphinx on espeak-ng's agent voice measures
0.4-1.0 on a correct turn), so only a recognition further than that from the text counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Default thresholds of `expect.transcripts_agree` (docs/formats.md).
DEFAULT_MAX_WER = 0.25
DEFAULT_MAX_AUDIO_WER = 1.0
#: Alignment: leaving a turn unmatched costs this; a matched pair costs min(1, its WER), so two
#: turns of equal count pair up in order unless a turn is really missing on one side.
_GAP = 0.6


def words(text: str) -> list[str]:
    """Lowercased words without punctuation (any script: `\\w` is unicode)."""
    return re.findall(r"[\w']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance / reference length (lowercased, punctuation stripped); 0 for two
    texts without words, 1 for words against none. Can exceed 1 (insertions)."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)


def text_distance(a: str, b: str) -> float:
    """Word error rate of two text accounts, symmetric (the larger of both directions): neither
    text account is the reference of the other."""
    return max(word_error_rate(a, b), word_error_rate(b, a))


def _text(value: object) -> str | None:
    """A text from stored or tabled data: None for a missing one (None, NaN), else a string."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class TurnAgreement:
    """One agent turn as the accounts tell it, and whether they agree.

    `problem`: None (they agree), `missing_stored` (a live turn the stored conversation lacks),
    `missing_live` (a stored turn no live event brought), `texts_differ` (live and stored words
    differ beyond `max_wer`), `audio_differs` (both texts agree, the recorded audio does not).
    `odd_one_out`: the account in error when the other two agree (`live`, `stored`, `audio`),
    None when it cannot be told (no audio to decide, or all three differ)."""

    #: 1-based among the live agent turns (None: a stored turn without a live one).
    agent_turn: int | None
    #: 1-based among the stored agent turns (None: missing there, or not fetched).
    stored_turn: int | None
    live: str | None
    stored: str | None
    #: voicelab's recognition of the turn's audio (None: not recognised; "": no speech in it).
    audio: str | None
    #: live vs stored (symmetric), and the audio against the closer text.
    text_wer: float | None
    audio_wer: float | None
    problem: str | None
    odd_one_out: str | None
    detail: str

    @property
    def agrees(self) -> bool:
        return self.problem is None

    @property
    def label(self) -> str:
        """How the turn is named in a check's detail: its live number, else its stored number."""
        if self.agent_turn is not None:
            return f"agent turn {self.agent_turn}"
        return f"stored agent turn {self.stored_turn}"


def align(live: Sequence[str], stored: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """Pairs of (live index, stored index) in order, None where a turn has no counterpart: the
    alignment of least cost (a pair costs min(1, text_distance), a lone turn `_GAP`), so one
    missing turn does not shift every later pair. Ties prefer pairing, deterministically."""
    n, m = len(live), len(stored)
    cost = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = i * _GAP
    for j in range(1, m + 1):
        cost[0][j] = j * _GAP
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            pair = cost[i - 1][j - 1] + min(1.0, text_distance(live[i - 1], stored[j - 1]))
            cost[i][j] = min(pair, cost[i - 1][j] + _GAP, cost[i][j - 1] + _GAP)
    out: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i or j:
        if i and j and math.isclose(cost[i][j], cost[i - 1][j - 1]
                                    + min(1.0, text_distance(live[i - 1], stored[j - 1]))):
            out.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and (not j or math.isclose(cost[i][j], cost[i - 1][j] + _GAP)):
            out.append((i - 1, None))
            i -= 1
        else:
            out.append((None, j - 1))
            j -= 1
    return out[::-1]


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def _judge(live: str | None, stored: str | None, audio: str | None, fetched: bool, max_wer: float,
           max_audio_wer: float) -> tuple[float | None, float | None, str | None, str | None, str]:
    """(text_wer, audio_wer, problem, odd_one_out, detail) of one aligned turn."""
    text_wer = text_distance(live, stored) if live is not None and stored is not None else None
    heard = audio is not None
    against = [t for t in (live, stored) if t is not None]
    audio_wer = min(word_error_rate(t, audio) for t in against) if heard and against else None
    no_speech = heard and not words(audio or "") and any(words(t) for t in against)
    audio_ok = heard and not no_speech and audio_wer is not None and audio_wer <= max_audio_wer
    if fetched and stored is None:
        odd = "live" if no_speech else "stored"
        why = "no speech in its audio either" if no_speech else (
            "its audio agrees with the live text" if audio_ok else "")
        return text_wer, audio_wer, "missing_stored", odd, "missing from the stored conversation" + (
            f" ({why})" if why else "")
    if live is None:
        return text_wer, audio_wer, "missing_live", "live", "stored, but no live event brought it"
    if text_wer is not None and text_wer > max_wer:
        detail = f"live and stored words differ (WER {_fmt(text_wer)} > {max_wer:g})"
        odd = None
        if heard and stored is not None and not no_speech:
            to_live, to_stored = word_error_rate(live, audio or ""), word_error_rate(stored, audio or "")
            if min(to_live, to_stored) <= max_audio_wer and not math.isclose(to_live, to_stored):
                odd = "stored" if to_live < to_stored else "live"
                detail += f"; the audio agrees with the {'live' if odd == 'stored' else 'stored'} text"
        return text_wer, audio_wer, "texts_differ", odd, detail
    if heard and not audio_ok:
        detail = ("no speech in its audio" if no_speech else
                  f"its audio says something else (WER {_fmt(audio_wer or 0.0)} > {max_audio_wer:g})")
        return text_wer, audio_wer, "audio_differs", "audio", detail
    return text_wer, audio_wer, None, None, "agree"


def compare(live: Sequence[object], stored: Sequence[object] | None = None, audio: Sequence[object] | None = None,
            *, max_wer: float = DEFAULT_MAX_WER, max_audio_wer: float = DEFAULT_MAX_AUDIO_WER) -> list[TurnAgreement]:
    """Every agent turn of the accounts, aligned, with whether they agree.

    `live`: the agent turns' texts from the live events; `stored`: the stored conversation's agent
    turns (None: not fetched, so only the live text and the audio are compared); `audio`: per live
    turn, voicelab's recognition of its audio (None, or a None item: not recognised). Missing
    texts (None, NaN) and turns without words on both sides say nothing and are left out; an
    `audio` list of another length than `live` is cut or padded with None."""
    live_t = [_text(t) for t in live]
    heard = [_text(a) for a in (audio or [])][: len(live_t)]
    heard += [None] * (len(live_t) - len(heard))
    kept = [(i, t, heard[i]) for i, t in enumerate(live_t) if t is not None and words(t)]
    fetched = stored is not None
    stored_t = [(j, t) for j, t in enumerate(_text(s) for s in (stored or [])) if t is not None and words(t)]
    pairs = (align([t for _, t, _ in kept], [t for _, t in stored_t]) if fetched
             else [(k, None) for k in range(len(kept))])
    out = []
    for a, b in pairs:
        index, text, said = kept[a] if a is not None else (None, None, None)
        s_index, s_text = stored_t[b] if b is not None else (None, None)
        text_wer, audio_wer, problem, odd, detail = _judge(text, s_text, said, fetched, max_wer, max_audio_wer)
        out.append(TurnAgreement(
            agent_turn=index + 1 if index is not None else None,
            stored_turn=s_index + 1 if s_index is not None else None,
            live=text, stored=s_text, audio=said,
            text_wer=round(text_wer, 3) if text_wer is not None else None,
            audio_wer=round(audio_wer, 3) if audio_wer is not None else None,
            problem=problem, odd_one_out=odd, detail=detail))
    return out
