"""The main job end to end: papermill runs the notebooks in real kernels, the report is one HTML
file that reads offline in a real headless Chromium, and no secret reaches any stored output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from voicelab.lab.store import RunStore
from voicelab.report.build import build_report

from ..conftest import AGENTS, PERSONAS, ROOT

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
FAKE_KEY = "fake-voicelab-test-secret-0123456789abcdef"  # must not look like a real key


def test_batch_notebook_runs_under_papermill(tmp_path: Path):
    out = tmp_path / "batch.out.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "batch.ipynb"), str(out), kernel_name="python3", progress_bar=False,
        cwd=str(tmp_path),
        parameters={"personas": str(PERSONAS), "agents": str(AGENTS), "agent": "chargeback",
                    "persona_ids": ["anna-double-charge", "kevin-in-a-hurry"], "repeats": 2, "concurrency": 2,
                    "run_id": "nb", "runs_root": str(tmp_path / "runs")})
    results = RunStore(tmp_path / "runs").open("nb").results()
    assert len(results) == 4 and all(r.success for r in results)
    nb = nbformat.read(out, as_version=4)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert html.count('<img class="vl-chart" alt="') == 4, "the four charts are shown"
    assert "vl-kpis" in html and "kevin-in-a-hurry#2" in html


def test_report_reads_offline_in_chromium(tmp_path: Path, artifacts: Path):
    from voicelab.lab.batch import run_batch

    run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge", "silent-line-chargeback",
                                                       "jonas-de-entwickler"], runs_root=str(tmp_path / "runs"),
              run_id="offline", progress=False)
    path = build_report("offline", runs_root=tmp_path / "runs", reports_dir=tmp_path / "reports")
    assert path == tmp_path / "reports" / "offline.html"
    text = path.read_text()
    assert "<script" not in text and "def " not in text.split("<style")[0], "no code cells, no scripts"

    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        context = browser.new_context(offline=True, viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.src.slice(0, 15)])")
        assert len(images) == 4 and all(w > 300 and src.startswith("data:image/png") for w, src in images)
        assert page.inner_text("#vl-kpis").count("\n") >= 5 and "calls" in page.inner_text("#vl-kpis")
        assert page.locator("#vl-calls tr").count() == 4  # header + 3 calls
        assert "silent-line-chargeback" in page.inner_text("#vl-transcripts")
        page.click("details.vl-persona:has-text('jonas-de-entwickler') > summary")
        assert page.is_visible("text=Hallo Jonas, hier ist Sam")
        page.screenshot(path=str(artifacts / "report-offline.png"), full_page=True)
        browser.close()
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


def test_no_secret_in_runs_notebooks_reports_or_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The hosted path really uses the key (against the local backend), yet it is stored nowhere."""
    server = subprocess.Popen([sys.executable, "-m", "voicelab", "serve", "--agents", str(AGENTS)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = server.stdout.readline()
        url = first.split(" at ", 1)[1].split()[0]
        monkeypatch.setenv("ELEVENLABS_API_KEY", FAKE_KEY)  # the notebook kernel inherits these
        monkeypatch.setenv("ELEVENLABS_BASE_URL", url)
        monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
        env = dict(os.environ)
        proc = subprocess.run(
            [sys.executable, "-m", "voicelab", "run", "--backend", "elevenlabs", "--agent", "chargeback",
             "--persona", "anna-double-charge", "olga-credit-question", "--personas", str(PERSONAS), "--agents",
             str(AGENTS), "--run-id", "secret", "--runs", str(tmp_path / "runs"), "--reports",
             str(tmp_path / "reports")], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "batch.ipynb"), str(tmp_path / "batch.out.ipynb"), kernel_name="python3",
            progress_bar=False, cwd=str(tmp_path),
            parameters={"personas": str(PERSONAS), "agents": str(AGENTS), "persona_ids": ["tomasz-merchant-refunded"],
                        "backend": "elevenlabs", "repeats": 1, "run_id": "secret-nb",
                        "runs_root": str(tmp_path / "runs")})
    finally:
        server.terminate()
        server_log, _ = server.communicate(timeout=10)
    results = RunStore(tmp_path / "runs").open("secret").results()
    assert [r.backend for r in results] == ["elevenlabs", "elevenlabs"] and all(r.success for r in results)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in files) and any(p.name == "report.ipynb" for p in files)
    for p in files:
        assert FAKE_KEY not in p.read_text(errors="ignore"), p
    for output in (proc.stdout, proc.stderr, server_log):
        assert FAKE_KEY not in output


def test_building_a_report_never_changes_the_processs_working_directory(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """The REST service builds reports in the process that places calls: a thread writing to a
    relative path while a report is built keeps writing where it started (papermill's `cwd=`
    would os.chdir the whole process into the run folder for the notebook's run)."""
    import threading

    from voicelab.lab.batch import run_batch

    monkeypatch.chdir(tmp_path)
    run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge"], runs_root="runs", run_id="cwd",
              progress=False)
    home = os.getcwd()
    seen: set[str] = set()
    lines = 0
    stop = threading.Event()

    def place_calls() -> None:  # as a run being stored: appends to a path relative to the working directory
        nonlocal lines
        while not stop.is_set():
            seen.add(os.getcwd())
            with open("calls-in-flight.jsonl", "a", encoding="utf-8") as f:
                f.write("{}\n")
            lines += 1
            stop.wait(0.005)

    writer = threading.Thread(target=place_calls)
    writer.start()
    try:
        path = build_report("cwd", runs_root="runs", reports_dir="reports")
    finally:
        stop.set()
        writer.join()
    assert seen == {home} and os.getcwd() == home
    assert (tmp_path / "calls-in-flight.jsonl").read_text().count("\n") == lines > 10
    assert not (tmp_path / "runs" / "cwd" / "calls-in-flight.jsonl").exists()
    assert path == Path("reports") / "cwd.html" and (tmp_path / "reports" / "cwd.html").is_file()
    assert "anna-double-charge" in (tmp_path / "reports" / "cwd.html").read_text()
