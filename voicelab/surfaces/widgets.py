"""The notebook call console: pick a persona, read its brief, call the agent yourself (or watch
the scripted caller play it). The widgets only bind to a `ConsoleSession` (voicelab/surfaces/console.py),
which owns the backend, the run and the calls.

    from voicelab.surfaces.widgets import CallConsole
    CallConsole()            # in notebooks/live_call.ipynb

A human tester role-plays the persona by typing (text mode) or through the microphone (voice
mode) while the transcript grows live. When the call ends the verdict is shown and the call is
stored like any batch call: one run per console session, so tables and reports include it.

Widgets are updated from the SDK's threads only through `.value` (safe after the cell has
finished; `with output:` from a thread is silently lost). Every widget carries a stable CSS
class (`vl-...`) for browser tests.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path

import ipywidgets as w

from voicelab.harness.call import Call
from voicelab.lab.store import Run
from voicelab.spec.checks import percentile
from voicelab.spec.datasets import Dataset, load_dataset
from voicelab.spec.errors import VoiceLabError
from voicelab.spec.models import CallResult, Persona, TranscriptEntry
from voicelab.surfaces.console import ConsoleSession

REPO = Path(__file__).resolve().parents[2]


def _default(path: str) -> str:
    """datasets/... from the working folder, or from the repository when run in notebooks/."""
    return path if Path(path).exists() else str(REPO / path)


def persona_card(p: Persona) -> str:
    """The brief a human tester role-plays from."""
    variables = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in p.variables.items())
    replies = "".join(f"<li>when asked about <i>{html.escape(' / '.join(r.when))}</i>: “{html.escape(r.say)}”</li>"
                      for r in p.caller.replies)
    e = p.expect
    expects = [f"agent says: {', '.join(e.agent_says)}" if e.agent_says else "",
               f"agent never says: {', '.join(e.agent_never_says)}" if e.agent_never_says else "",
               f"ended by: {e.ended_by}" if e.ended_by else "",
               f"at most {e.max_duration_s:g} s" if e.max_duration_s else ""]
    expect_html = "".join(f"<li>{html.escape(x)}</li>" for x in expects if x)
    return (f"<div class='vl-brief'><h3>{html.escape(p.name)} <small>({html.escape(p.id)}, {p.language}, "
            f"{p.caller.style})</small></h3><p>{html.escape(p.summary)}</p>"
            f"<b>What you know</b><ul>{variables}</ul><b>How you answer</b><ul>{replies or '<li>as you like</li>'}"
            f"</ul><b>A good agent</b><ul>{expect_html or '<li>(no expectations)</li>'}</ul></div>")


def _classed(widget: w.Widget, name: str) -> w.Widget:
    widget.add_class(name)
    return widget


class CallConsole:
    def __init__(self, personas: str = "datasets/personas", agents: str = "datasets/agents", *,
                 runs_root: str | None = None, latency_ms: float = 0.0) -> None:
        # next to the datasets: the repository's runs/ even when the notebook runs in notebooks/
        self.runs_root = runs_root or ("runs" if Path("datasets").is_dir() else str(REPO / "runs"))
        self.latency_ms = latency_ms
        self.dataset: Dataset | None = None
        self.session: ConsoleSession | None = None
        self.call: Call | None = None
        self.result: CallResult | None = None
        self._lines: list[str] = []
        self._build()
        try:
            self.dataset = load_dataset(_default(personas), _default(agents))
        except VoiceLabError as exc:
            self._error(f"Persona files are invalid: {exc}")
            self.start_button.disabled = True
            return
        self.session = ConsoleSession(self.dataset, runs_root=self.runs_root, latency_ms=latency_ms)
        self.persona_picker.options = [(f"{p.name}  ({p.id})", p.id) for p in self.dataset.personas.values()]
        self.agent_picker.options = sorted(self.dataset.agents)
        self.persona_picker.value = next(iter(self.dataset.personas))
        self._devices()
        self._on_persona()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.persona_picker = _classed(w.Dropdown(description="Persona"), "vl-persona")
        self.card = _classed(w.HTML(), "vl-card")
        self.agent_picker = _classed(w.Dropdown(description="Agent"), "vl-agent")
        self.backend_picker = _classed(w.Dropdown(description="Backend", options=["local", "elevenlabs"]),
                                       "vl-backend")
        callers = sorted(ConsoleSession.callers(), key=lambda name: name != "human")  # you first
        self.caller_picker = _classed(w.Dropdown(description="Caller", options=[
            ("you", "human") if name == "human" else (name, name) for name in callers]), "vl-caller")
        self.mode_picker = _classed(w.ToggleButtons(description="Mode", options=[("Text chat", "text"),
                                                                                  ("Voice (microphone)", "voice")]),
                                    "vl-mode")
        self.input_picker = _classed(w.Dropdown(description="Microphone"), "vl-input")
        self.output_picker = _classed(w.Dropdown(description="Speaker"), "vl-output")
        self.start_button = _classed(w.Button(description="Start", button_style="success", icon="phone"), "vl-start")
        self.stop_button = _classed(w.Button(description="Stop", button_style="danger", disabled=True), "vl-stop")
        self.message = _classed(w.Text(placeholder="Type your reply as the persona", disabled=True,
                                       layout=w.Layout(width="60%")), "vl-message")
        self.send_button = _classed(w.Button(description="Send", disabled=True), "vl-send")
        self.transcript = _classed(w.HTML("<i>No call yet.</i>"), "vl-transcript")
        self.level = _classed(w.FloatProgress(value=0, min=0, max=1, description="Mic level"), "vl-level")
        self.timer = _classed(w.Label("0:00"), "vl-timer")
        self.status = _classed(w.HTML("Ready."), "vl-status")
        self.verdict = _classed(w.HTML(), "vl-verdict")
        self.persona_picker.observe(lambda _: self._on_persona(), names="value")
        self.mode_picker.observe(lambda _: self._on_mode(), names="value")
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.send_button.on_click(lambda _: self.send())
        self.widget = _classed(w.VBox([
            w.HBox([self.persona_picker, self.agent_picker, self.backend_picker, self.caller_picker]), self.card,
            self.mode_picker,
            w.HBox([self.input_picker, self.output_picker]),
            w.HBox([self.start_button, self.stop_button, self.timer, self.level]),
            w.HBox([self.message, self.send_button]), self.transcript, self.status, self.verdict,
        ]), "vl-console")
        self._on_mode()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _devices(self) -> None:
        try:
            from voicelab.audio.sounddevice import list_devices

            devices = list_devices()
        except VoiceLabError as exc:
            devices = []
            self.input_picker.description_tooltip = str(exc)
        self.input_picker.options = [("system default", None)] + [
            (d["name"], d["index"]) for d in devices if d["inputs"]]
        self.output_picker.options = [("system default", None)] + [
            (d["name"], d["index"]) for d in devices if d["outputs"]]

    def _on_persona(self) -> None:
        if self.dataset is None or self.persona_picker.value is None:
            return
        persona = self.dataset.persona(self.persona_picker.value)
        self.card.value = persona_card(persona)
        self.agent_picker.value = persona.agent

    def _on_mode(self) -> None:
        voice = self.mode_picker.value == "voice"
        self.input_picker.layout.display = self.output_picker.layout.display = None if voice else "none"
        self.level.layout.display = None if voice else "none"

    def _error(self, text: str) -> None:
        self.status.value = f"<span class='vl-error' style='color:#c62828'><b>Error:</b> {html.escape(text)}</span>"

    # ------------------------------------------------------------------ the call

    @property
    def run(self) -> Run | None:
        return self.session.run if self.session is not None else None

    def start(self) -> None:
        if self.session is None or (self.call is not None and not self.call.done):
            return
        mode, human = self.mode_picker.value, self.caller_picker.value == "human"
        self._lines, self.result, self.verdict.value = [], None, ""
        self.transcript.value = "<i>Calling...</i>"
        try:
            audio = None
            if mode == "voice" and human:
                from voicelab.audio.sounddevice import SoundDeviceAudio

                audio = SoundDeviceAudio(self.input_picker.value, self.output_picker.value)
            self.call = self.session.place(
                self.persona_picker.value, agent_id=self.agent_picker.value, backend=self.backend_picker.value,
                mode=mode, caller=self.caller_picker.value, audio=audio, on_entry=self._on_entry)
        except VoiceLabError as exc:
            self.call = None
            self._error(str(exc))
            self.transcript.value = "<i>No call.</i>"
            return
        except Exception as exc:  # noqa: BLE001 - a backend that cannot be reached and the like: no traceback
            self.call = None
            self._error(f"could not start the call: {exc}")
            return
        persona = self.dataset.persona(self.persona_picker.value) if self.dataset else None
        agent_name = self.dataset.agents[self.agent_picker.value].name if self.dataset else ""
        how = ("Speak into the microphone." if mode == "voice" else "Type your replies below.") if human \
            else "A second agent plays the persona." if self.caller_picker.value == "agent" \
            else "The scripted caller plays the persona."
        self.status.value = (f"Connected to <b>{html.escape(agent_name)}</b> as "
                             f"{html.escape(persona.name if persona else '')}. {how}")
        self._set_running(True)
        threading.Thread(target=self._watch, args=(self.call,), daemon=True).start()

    def close(self) -> None:
        """Hang up and stop the console's local backend."""
        if self.call is not None and not self.call.done:
            self.call.stop()
        if self.session is not None:
            self.session.close()

    def send(self) -> None:
        text = self.message.value.strip()
        if not text or self.call is None:
            return
        try:
            self.call.send(text)
        except Exception as exc:  # noqa: BLE001 - the call ended meanwhile
            self._error(f"not sent: {exc}")
            return
        self.message.value = ""

    def stop(self) -> None:
        if self.call is not None:
            self.status.value = "Hanging up..."
            self.call.stop()

    def _set_running(self, running: bool) -> None:
        self.start_button.disabled = running
        self.stop_button.disabled = not running
        text = running and self.mode_picker.value == "text" and self.caller_picker.value == "human"
        self.message.disabled = self.send_button.disabled = not text
        for picker in (self.persona_picker, self.agent_picker, self.backend_picker, self.caller_picker,
                       self.mode_picker, self.input_picker, self.output_picker):
            picker.disabled = running

    def _on_entry(self, entry: TranscriptEntry) -> None:
        who = "Agent" if entry.speaker == "agent" else "You"
        latency = f" <small>({entry.latency_ms:.0f} ms)</small>" if entry.latency_ms is not None else ""
        self._lines.append(f"<div class='vl-line vl-{entry.speaker}'><small>{entry.timestamp:5.1f}s</small> "
                           f"<b>{who}</b>: {html.escape(entry.text)}{latency}</div>")
        self.transcript.value = "".join(self._lines)

    def _watch(self, call: Call) -> None:
        """Timer, level meter, and the end of the call (on a thread; widgets via .value only)."""
        started = time.monotonic()
        while not call.done:
            elapsed = int(time.monotonic() - started)
            self.timer.value = f"{elapsed // 60}:{elapsed % 60:02d}"
            stats = call.voice_stats
            if stats is not None:
                self.level.value = min(1.0, stats.input_level / 6000)
            time.sleep(0.2)
        assert self.session is not None
        try:
            result = self.session.finish(call)
        except Exception as exc:  # noqa: BLE001 - shown in the console, never a traceback
            self._set_running(False)
            self._error(f"the call failed: {exc}")
            return
        self._set_running(False)
        self.level.value = 0
        self.status.value = "Call ended."
        self.verdict.value = verdict_html(result, self.run.calls_path if self.run else None)
        self.result = result  # last: it tells waiting code that everything above is done


def verdict_html(r: CallResult, stored: Path | None) -> str:
    lat = r.metrics.response_latency_ms
    latency = (f"latency p50 {percentile(lat, 50):.0f} ms, p95 {percentile(lat, 95):.0f} ms" if lat
               else "no latency measured")
    checks = "".join(f"<li class='vl-check {'vl-pass' if c.passed else 'vl-fail'}'>"
                     f"{'pass' if c.passed else '<b>FAIL</b>'} {html.escape(c.name)}: {html.escape(c.detail)}</li>"
                     for c in r.checks)
    head = "<b style='color:#2e7d32'>PASS</b>" if r.success else "<b style='color:#c62828'>FAIL</b>"
    error = f"<div>error: {html.escape(r.error)}</div>" if r.error else ""
    files = f"<div><small>stored in {html.escape(str(stored))} as {html.escape(str(r.call_id))}" + (
        f"; recording {html.escape(r.audio_path)}" if r.audio_path else "") + "</small></div>"
    return (f"<div class='vl-result'>{head} {r.duration_seconds:.1f} s, ended: {r.end_reason}, {r.metrics.turns} "
            f"turns, {latency}{error}<ul>{checks}</ul>{files}</div>")
