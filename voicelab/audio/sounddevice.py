"""A real microphone and speaker for the SDK, over sounddevice (PortAudio).

16 kHz mono int16 both ways, as the SDK assumes; a device that cannot open 16 kHz is opened at
its own rate and resampled. It is the SDK's AsyncAudioInterface, so a person's call runs on the
same async driver as every other call. The PortAudio callbacks only copy bytes: microphone
blocks are handed to the call's event loop, where one task sends them in order, and the speaker
callback drains an output buffer that `interrupt()` clears at once (barge-in must silence the
agent immediately).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from elevenlabs.conversational_ai.conversation import AsyncAudioInterface

from voicelab.audio.speech import RATE, SPEECH_RMS, resample, rms
from voicelab.audio.wav import StereoRecorder
from voicelab.spec.errors import ConfigError, MissingDependency

BLOCK_S = 0.02


def load_sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio into an error that says what to install."""
    try:
        import sounddevice
    except OSError as exc:  # raised when libportaudio is not on the machine
        raise MissingDependency(f"PortAudio is not installed ({exc}): apt-get install libportaudio2 "
                                "(scripts/setup.sh does it)") from None
    except ImportError:
        raise MissingDependency("sounddevice is missing: pip install -e . (it is a voicelab dependency)") from None
    return sounddevice


def device_arg(value: str | None) -> int | str | None:
    """A --input-device / --output-device value: an index if it is a number, else a name."""
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def list_devices() -> list[dict[str, Any]]:
    sd = load_sounddevice()
    return [{"index": i, "name": d["name"], "inputs": d["max_input_channels"], "outputs": d["max_output_channels"],
             "default_rate": int(d["default_samplerate"])} for i, d in enumerate(sd.query_devices())]


def rescan_audio_devices(sd: Any) -> None:  # noqa: ANN401 - the sounddevice module
    """Make PortAudio list the audio devices again. It lists them once, when it starts, so a
    device or sound server that appeared later (PulseAudio started after the notebook's kernel)
    is not found until it restarts. sounddevice has no public call for that: its private
    `_terminate` / `_initialize` are read here and nowhere else (the tests hold it to these two)."""
    sd._terminate()
    sd._initialize()


def resolve(device: int | str | None, kind: str) -> tuple[int | None, int]:
    """(device index or None for the default, sample rate to open it at), or a ConfigError."""
    sd = load_sounddevice()
    try:
        try:
            info = sd.query_devices(device, kind=kind)
        except (ValueError, sd.PortAudioError):  # perhaps a device that appeared after PortAudio started
            rescan_audio_devices(sd)
            info = sd.query_devices(device, kind=kind)
    except (ValueError, sd.PortAudioError) as exc:
        what = f"{kind} device {device!r}" if device is not None else f"default {kind} device"
        raise ConfigError(f"no usable {what} ({exc}): choose one from `voicelab devices` with "
                          f"--{kind}-device NAME_OR_INDEX") from None
    index = info["index"] if isinstance(info, dict) and "index" in info else device
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    for rate in (RATE, int(info["default_samplerate"])):
        try:
            check(device=index, channels=1, dtype="int16", samplerate=rate)
            return index, rate
        except Exception:  # noqa: BLE001 - PortAudio raises several kinds for "not this format"
            continue
    raise ConfigError(f"{kind} device {info['name']!r} accepts neither 16 kHz nor "
                      f"{int(info['default_samplerate'])} Hz mono int16: choose another with --{kind}-device")


class SoundDeviceAudio(AsyncAudioInterface):
    def __init__(self, input_device: int | str | None = None, output_device: int | str | None = None, *,
                 clock: Callable[[], float] | None = None, recorder: StereoRecorder | None = None) -> None:
        self.input_device, self.in_rate = resolve(input_device, "input")
        self.output_device, self.out_rate = resolve(output_device, "output")
        self.clock = clock or time.monotonic
        self.recorder = recorder
        self._blocks: asyncio.Queue[tuple[float, bytes]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out = bytearray()
        self._out_lock = threading.Lock()
        self._streams: list[Any] = []
        self._sender: asyncio.Task | None = None
        self.level = 0.0  # RMS of the last microphone block, for a level meter
        self.speech_end: float | None = None  # call-clock time of the last loud microphone block
        self.underruns = 0
        self.caller_speech_s = 0.0
        self.agent_audio_s = 0.0
        self.interruptions = 0
        #: For the harness-latency benchmark: (callback time, handed to the SDK) per block.
        self.input_delays: list[float] = []
        self.output_at: list[float] = []  # perf_counter when each agent chunk reached the output buffer

    @property
    def playing(self) -> bool:
        """Agent audio is still waiting to be played."""
        with self._out_lock:
            return bool(self._out)

    # PortAudio threads: copy and return
    def _on_input(self, indata: Any, frames: int, when: Any, status: Any) -> None:
        if self._loop is not None and self._blocks is not None:
            self._loop.call_soon_threadsafe(self._blocks.put_nowait, (time.perf_counter(), bytes(indata)))

    def _on_output(self, outdata: Any, frames: int, when: Any, status: Any) -> None:
        need = len(outdata)
        with self._out_lock:
            chunk = bytes(self._out[:need])
            del self._out[:need]
        if status.output_underflow:
            self.underruns += 1
        outdata[:len(chunk)] = chunk
        if len(chunk) < need:
            outdata[len(chunk):] = b"\0" * (need - len(chunk))

    async def start(self, input_callback: Callable[[bytes], Awaitable[None]]) -> None:
        sd = load_sounddevice()
        self._loop = asyncio.get_running_loop()
        blocks = self._blocks = asyncio.Queue()

        async def send() -> None:
            while True:
                received, pcm = await blocks.get()
                if self.in_rate != RATE:
                    pcm = resample(np.frombuffer(pcm, dtype=np.int16), self.in_rate).tobytes()
                at = self.clock()
                self.level = rms(pcm)
                if self.level >= SPEECH_RMS:
                    self.speech_end = at
                    self.caller_speech_s += len(pcm) / (RATE * 2)
                if self.recorder is not None:
                    self.recorder.caller(at, pcm)
                await input_callback(pcm)
                self.input_delays.append(time.perf_counter() - received)

        self._sender = asyncio.create_task(send())
        try:
            self._streams = [
                sd.RawInputStream(samplerate=self.in_rate, channels=1, dtype="int16", device=self.input_device,
                                  blocksize=int(self.in_rate * BLOCK_S), callback=self._on_input),
                sd.RawOutputStream(samplerate=self.out_rate, channels=1, dtype="int16", device=self.output_device,
                                   blocksize=int(self.out_rate * BLOCK_S), callback=self._on_output),
            ]
            for stream in self._streams:
                stream.start()
        except sd.PortAudioError as exc:
            await self.stop()
            raise ConfigError(f"the audio device refused to open ({exc}): pick another with `voicelab devices`") \
                from None

    async def output(self, audio: bytes) -> None:
        self.agent_audio_s += len(audio) / (RATE * 2)
        if self.recorder is not None:
            self.recorder.agent(self.clock(), audio)
        if self.out_rate != RATE:
            audio = resample(np.frombuffer(audio, dtype=np.int16), RATE, self.out_rate).tobytes()
        with self._out_lock:
            self._out += audio
        self.output_at.append(time.perf_counter())

    async def interrupt(self) -> None:
        self.interruptions += 1
        with self._out_lock:
            self._out.clear()

    async def stop(self) -> None:
        for stream in self._streams:
            try:
                stream.stop()
                stream.close()
            except Exception:  # noqa: BLE001 - closing a broken stream must not hide the real error
                pass
        self._streams = []
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        self._loop = None
