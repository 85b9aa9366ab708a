"""Audio conditions of the synthetic caller, and time to first audio.

The measures (SNR, loss rate, band limit) are checked on the conditioner itself; then real voice
calls through the SDK and the local backend show what a user sees: noise raises the WER over the
clean twin's on the same lines, a phone line's recording has nothing above 4 kHz, and the time
to first audio has the backend's injected response time as its floor.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile

from voicelab.audio.conditions import FRAME, SPEECH_LEVEL, BurstLoss, Conditioner, mu_law
from voicelab.audio.speech import speak
from voicelab.harness.call import Call
from voicelab.lab.experiment import load_experiment
from voicelab.lab.plan import apply_variant, with_variants
from voicelab.lab.tables import by_condition, calls_table
from voicelab.spec.errors import DatasetError
from voicelab.spec.models import AudioCondition, Variant

RATE = 16000


def above_4k_share(x: np.ndarray) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    return float(power[freqs > 4000].sum() / power.sum())


def run_frames(conditioner: Conditioner, pcm: bytes | None, frames: int) -> np.ndarray:
    data = pcm.ljust(frames * FRAME * 2, b"\0") if pcm else None
    out = [conditioner(data[i * FRAME * 2:(i + 1) * FRAME * 2] if data else None) for i in range(frames)]
    return np.frombuffer(b"".join(out), dtype=np.int16).astype(float)


def test_noise_is_mixed_at_the_asked_snr_and_plays_between_words() -> None:
    for kind in ("white", "pink", "babble", "street"):
        quiet = run_frames(Conditioner(AudioCondition(noise=kind, snr_db=10), "call-1"), None, 400)
        level = np.sqrt(np.mean(quiet ** 2))
        assert 20 * np.log10(SPEECH_LEVEL / level) == pytest.approx(10, abs=1.0), kind  # 8 s of the bed
    again = run_frames(Conditioner(AudioCondition(noise="pink", snr_db=10), "call-1"), None, 50)
    other = run_frames(Conditioner(AudioCondition(noise="pink", snr_db=10), "call-2"), None, 50)
    assert np.array_equal(again, run_frames(Conditioner(AudioCondition(noise="pink", snr_db=10), "call-1"), None, 50))
    assert not np.array_equal(again, other)  # each call its own stretch of noise, the same on every re-run


def test_the_phone_channel_keeps_the_voice_band_and_nothing_above_4_khz() -> None:
    rng = np.random.default_rng(1)
    white = (rng.standard_normal(FRAME * 200) * 3000).astype(np.int16).tobytes()
    out = run_frames(Conditioner(AudioCondition(channel="phone"), "x"), white, 200)
    assert above_4k_share(out) < 1e-4
    power = np.abs(np.fft.rfft(out)) ** 2
    freqs = np.fft.rfftfreq(len(out), 1 / RATE)
    assert power[(freqs > 250) & (freqs < 3600)].sum() / power.sum() > 0.97  # the 300-3400 Hz band
    x = np.linspace(-32000, 32000, 101)
    assert np.max(np.abs(mu_law(x) - x) / np.maximum(np.abs(x), 1000)) < 0.05  # 8-bit mu-law: a few % error


def test_frames_are_lost_in_bursts_at_the_asked_rate() -> None:
    loss = BurstLoss(0.05, np.random.default_rng(7))
    dropped = [loss() for _ in range(40_000)]
    assert np.mean(dropped) == pytest.approx(0.05, abs=0.01)
    bursts = np.diff(np.flatnonzero(np.diff(np.r_[0, dropped, 0])))[::2]
    assert np.mean(bursts) == pytest.approx(4.0, rel=0.2)  # runs of ~80 ms, not single frames


def test_rate_and_voice_change_the_speech_itself() -> None:
    from voicelab.audio.conditions import words_per_minute

    normal = speak("Yes, please go ahead with the dispute.", "en-us+f3", words_per_minute(None))
    fast = speak("Yes, please go ahead with the dispute.", "en-us+f3", words_per_minute(AudioCondition(rate=1.5)))
    assert len(fast) < 0.8 * len(normal)


def test_conditions_are_validated_and_usable_as_an_experiment_variant(tmp_path, dataset) -> None:
    with pytest.raises(ValueError, match="snr_db"):
        AudioCondition(noise="white", snr_db=200)
    (tmp_path / "exp.yaml").write_text(
        "id: noisy\npersonas: [anna-double-charge]\nmode: voice\nagents_path: "
        f"{dataset.persona_files['anna-double-charge'].parent.parent / 'agents'}\n"
        "personas_path: " f"{dataset.persona_files['anna-double-charge'].parent}\n"
        "variants:\n  - id: clean\n  - id: street\n    caller_audio: {noise: street, snr_db: 5, channel: phone}\n")
    experiment = load_experiment(tmp_path / "exp.yaml")
    served = with_variants(dataset, experiment.variants)
    request = served.request("anna-double-charge", mode="voice")
    noisy = apply_variant(request, experiment.variants[1], served)
    assert noisy.persona.caller.audio.label() == "street 5 dB, phone"
    assert apply_variant(request, experiment.variants[0], served).persona.caller.audio is None
    (tmp_path / "bad.yaml").write_text((tmp_path / "exp.yaml").read_text().replace("street, snr", "x.wav, snr"))
    with pytest.raises(DatasetError, match=r"variants\[1\].caller_audio.noise"):
        load_experiment(tmp_path / "bad.yaml")
    assert Variant(id="v", caller_audio={"loss": 0.1}).caller_audio.label() == "loss 10%"


@pytest.mark.realtime
def test_noise_raises_wer_over_the_clean_twin_and_the_phone_line_is_band_limited(dataset, local_backend,
                                                                                  tmp_path) -> None:
    """Three real voice calls at once, the same persona and lines: clean, in pink noise, and over
    a phone line; the backend answers 400 ms after the caller's speech ends."""
    backend = local_backend(latency_s=0.4)
    base = dataset.request("anna-double-charge", mode="voice", audio_dir=str(tmp_path), max_duration_s=60)

    def twin(call_id: str, audio: AudioCondition | None):  # noqa: ANN202
        caller = base.persona.caller.model_copy(update={"audio": audio, "hang_up_after_turns": 1})
        return base.model_copy(update={"call_id": call_id, "persona": base.persona.model_copy(
            update={"caller": caller})})

    requests = [twin("clean", None), twin("noisy", AudioCondition(noise="pink", snr_db=5)),
                twin("phone", AudioCondition(channel="phone"))]

    async def place() -> list:
        return await asyncio.gather(*(Call(r, base_url=backend.base_url).arun() for r in requests))

    clean, noisy, phone = asyncio.run(place())
    assert clean.metrics.condition == "clean" and noisy.metrics.condition == "pink 5 dB"
    assert clean.metrics.wer is not None and noisy.metrics.wer is not None
    assert noisy.metrics.wer > clean.metrics.wer, (clean.metrics.wer, noisy.metrics.wer)
    # time to first audio, per agent turn after the caller spoke: never before the injected 400 ms
    assert clean.metrics.first_audio_ms and min(clean.metrics.first_audio_ms) >= 380
    assert len(clean.metrics.first_speech_ms) == len(clean.metrics.first_audio_ms)
    # the recording keeps what the agent received: the phone line's has nothing above 4 kHz
    recorded, rate = soundfile.read(phone.audio_path, dtype="int16")
    caller_side = recorded[:, 0].astype(float)
    assert rate == RATE and np.sqrt(np.mean(caller_side ** 2)) > 100  # the caller did speak
    assert above_4k_share(caller_side) < 1e-3
    clean_side = soundfile.read(clean.audio_path, dtype="int16")[0][:, 0].astype(float)
    assert above_4k_share(clean_side) > 0.01  # a wideband voice has plenty there
    table = by_condition(calls_table([clean, noisy, phone]))
    assert table["condition"].tolist() == ["clean", "pink 5 dB", "phone"]
    assert table.set_index("condition").loc["pink 5 dB", "wer"] > table.set_index("condition").loc["clean", "wer"]
