"""What the local agent hears of a caller, default recogniser against the biased one (issue 30.1).

    .venv/bin/python benchmarks/asr_bias.py            # ~8 minutes of one core (15 on a shared box)
    .venv/bin/python benchmarks/asr_bias.py --quick    # the first 2 personas of each set, ~1 minute

Every caller line a bundled persona can say (its reply rules, its fallback, its goodbye) is
synthesised with the persona's own espeak-ng voice (`voice_for` / `speak`, as a voice call
does), framed by the silence an end-of-turn detector leaves (0.2 s before, 0.5 s after), and
recognised twice: with pocketsphinx's default model, and biased toward the vocabulary the local
backend builds for that call (`agent_vocabulary`: the agent's flow, tools, variables and
`asr_keywords`, never the persona). The same on a held-out set: the dentist agent and personas
of tests/e2e/data, written from the docs by another session, which the biasing was not tuned on.

WER is corpus-level: word edits over reference words, per set and language; each condition
clean, and with street noise at 15 dB through the phone channel (voicelab/audio/conditions.py).
Decode time is CPU seconds per second of audio (process time, one decoder, this process).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from voicelab.audio.conditions import FRAME, Conditioner
from voicelab.audio.speech import BYTES_PER_S, Transcriber, speak, voice_for
from voicelab.local.vocabulary import agent_vocabulary
from voicelab.spec.datasets import load_dataset
from voicelab.spec.models import AudioCondition, Persona
from voicelab.spec.script import lines_for
from voicelab.spec.transcripts import word_error_rate, words

ROOT = Path(__file__).resolve().parent.parent
SETS = {
    "bundled": (ROOT / "datasets/personas", ROOT / "datasets/agents"),
    "held-out (dentist, tests/e2e/data)": (ROOT / "tests/e2e/data/personas", ROOT / "tests/e2e/data/agents"),
}
NOISY = AudioCondition(noise="street", snr_db=15, channel="phone")
LEAD_S, TAIL_S = 0.2, 0.5


@dataclass
class Tally:
    errors: float = 0.0
    words: int = 0
    lines: int = 0
    cpu_s: float = 0.0
    audio_s: float = 0.0

    def add(self, reference: str, heard: str, cpu_s: float, audio_s: float) -> None:
        n = len(words(reference))
        self.errors += word_error_rate(reference, heard) * n
        self.words += n
        self.lines += 1
        self.cpu_s += cpu_s
        self.audio_s += audio_s

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else 0.0

    @property
    def rtf(self) -> float:
        return self.cpu_s / self.audio_s if self.audio_s else 0.0


def caller_lines(persona: Persona) -> list[str]:
    """What the scripted caller can say: its replies, its fallback, its goodbye."""
    said = [r.say for r in persona.caller.replies] + [persona.caller.fallback, lines_for(persona.language).bye]
    said += [t.say for t in persona.caller.turns]
    return list(dict.fromkeys(s for s in said if s.strip()))


def conditioned(pcm: bytes, condition: AudioCondition | None, seed: str) -> bytes:
    audio = b"\0" * (int(LEAD_S * BYTES_PER_S) & ~1) + pcm + b"\0" * (int(TAIL_S * BYTES_PER_S) & ~1)
    if condition is None:
        return audio
    conditioner = Conditioner(condition, seed)
    step = FRAME * 2
    return b"".join(conditioner(audio[i:i + step].ljust(step, b"\0")) for i in range(0, len(audio), step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the first 2 personas of each set")
    parser.add_argument("--show", action="store_true", help="print every line as heard, both ways")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {platform.platform()}, python {sys.version.split()[0]}")
    transcriber = Transcriber()
    tallies: dict[tuple[str, str, str, str], Tally] = {}
    build_s: list[float] = []
    for set_name, (personas, agents) in SETS.items():
        dataset = load_dataset(personas, agents)
        chosen = sorted(dataset.personas.values(), key=lambda p: p.id)
        if args.quick:
            chosen = chosen[:2]
        for persona in chosen:
            agent = dataset.agents[persona.agent]
            variables = {**agent.platform.placeholders, **persona.variables}
            vocabulary = agent_vocabulary(agent, variables, persona.language)
            start = time.perf_counter()
            transcriber.bias(vocabulary)  # built once per vocabulary (timed here), then cached
            build_s.append(time.perf_counter() - start)
            voice = voice_for(persona.id, persona.language)
            for line in caller_lines(persona):
                pcm = speak(line, voice)
                for cond_name, condition in (("clean", None), ("street 15 dB + phone", NOISY)):
                    audio = conditioned(pcm, condition, persona.id + line)
                    heard = {}
                    for model, vocab in (("default", None), ("biased", vocabulary)):
                        transcriber.bias(vocab)
                        start = time.process_time()
                        heard[model] = transcriber.transcribe(audio)
                        cpu = time.process_time() - start
                        key = (set_name, persona.language, cond_name, model)
                        tallies.setdefault(key, Tally()).add(line, heard[model], cpu, len(audio) / BYTES_PER_S)
                    if args.show:
                        print(f"  [{persona.id} {cond_name}] said: {line}\n      default: {heard['default']}"
                              f"\n      biased:  {heard['biased']}")
    print(f"biased model build: median {sorted(build_s)[len(build_s) // 2] * 1000:.0f} ms, "
          f"max {max(build_s) * 1000:.0f} ms per vocabulary (once per call start, per worker)")
    print(f"{'set':36} {'lang':4} {'condition':22} {'lines':>5} {'words':>5} "
          f"{'WER default':>11} {'WER biased':>10} {'CPU s/s default':>15} {'CPU s/s biased':>14}")
    for (set_name, language, cond_name, model), tally in tallies.items():
        if model != "default":
            continue
        biased = tallies[(set_name, language, cond_name, "biased")]
        print(f"{set_name:36} {language:4} {cond_name:22} {tally.lines:>5} {tally.words:>5} "
              f"{tally.wer:>11.3f} {biased.wer:>10.3f} {tally.rtf:>15.3f} {biased.rtf:>14.3f}")


if __name__ == "__main__":
    main()
