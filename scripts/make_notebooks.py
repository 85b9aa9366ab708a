"""Regenerate notebooks/batch.ipynb and notebooks/report.ipynb (thin: parameters + voicelab calls).

Run after changing the cells below: python scripts/make_notebooks.py
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent.parent / "notebooks"


def notebook(cells: list) -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = cells
    return nb


def params(source: str) -> nbf.NotebookNode:
    cell = nbf.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


code, md = nbf.v4.new_code_cell, nbf.v4.new_markdown_cell

report = notebook([
    params('run_dir = "runs/example"  # the run folder to report on (papermill sets it)\n'
           'audio = "embed"  # voice recordings: embed (Ogg Opus in the page) | link | none\n'
           'report_dir = "reports"  # where the HTML goes (links to recordings are relative to it)'),
    code("from IPython.display import HTML, display\n\n"
         "from voicelab.report import build as report\n"
         "from voicelab.report import charts\n"
         "from voicelab.lab.tables import load_runs\n\n"
         "tables = load_runs(run_dir)\n"
         "display(HTML(report.header_html(tables)))"),
    md("## Failures\nCalls that did not succeed, and why."),
    code("display(HTML(report.failures_html(tables)))"),
    md("## Charts"),
    code("for figure in charts.figures(tables.calls, tables.turns):\n"
         "    display(charts.png(figure))"),
    md("## Calls"),
    code("display(HTML(report.calls_html(tables)))"),
    md("## Transcripts\nOne section per persona; open it to read every call: each agent turn with its "
       "latency, the call's checks beside it, and for voice calls the recording."),
    code("display(HTML(report.transcripts_html(tables, audio=audio, report_dir=report_dir)))"),
])

batch = notebook([
    md("# Persona batch\nRuns every chosen persona against its agent (the local backend by default), "
       "then shows the tables and charts. Secrets never go here: set `ELEVENLABS_API_KEY` in the "
       "environment or `.env` for the hosted backend."),
    params('personas = "datasets/personas"   # a persona file or folder\n'
           'agents = "datasets/agents"\n'
           "persona_ids = []                  # empty: every persona (of `agent`, if set)\n"
           "agent = None                      # e.g. \"chargeback\"\n"
           'backend = "local"                 # local | elevenlabs\n'
           'caller = "scripted"\n'
           'mode = "text"\n'
           "repeats = 2\n"
           "concurrency = 8\n"
           "latency_ms = 0                    # local backend: agent response time per turn\n"
           "run_id = None                     # None: a new timestamped id\n"
           'runs_root = "runs"'),
    code("from IPython.display import HTML, display\n\n"
         "from voicelab.report import build as report\n"
         "from voicelab.report import charts\n"
         "from voicelab.lab.batch import run_batch\n"
         "from voicelab.lab.tables import load_runs\n\n"
         "outcome = run_batch(personas, agents, persona_ids=persona_ids or None, agent=agent, repeats=repeats,\n"
         "                    concurrency=concurrency, backend=backend, caller=caller, mode=mode,\n"
         "                    run_id=run_id, latency_ms=latency_ms, runs_root=runs_root)\n"
         "tables = load_runs(outcome.run.run_id, root=runs_root)\n"
         "display(HTML(report.header_html(tables)))"),
    code("tables.calls"),
    code("for figure in charts.figures(tables.calls, tables.turns):\n"
         "    display(charts.png(figure))"),
    code("display(HTML(report.failures_html(tables)))\n"
         "print('run folder:', outcome.run.path)"),
])

live = notebook([
    md("# Live call console\nPick a persona, read its brief, press **Start** and play the caller: type in "
       "text mode, or talk through the microphone in voice mode. The verdict appears when the call ends; "
       "every call is stored in `runs/console-*/` like a batch call. Run all cells to begin."),
    params('personas = "datasets/personas"\nagents = "datasets/agents"\n'
           "runs_root = None  # None: the repository's runs/\n"
           "latency_ms = 0  # local backend: agent response time per turn"),
    code("from voicelab.surfaces.widgets import CallConsole\n\n"
         "console = CallConsole(personas, agents, runs_root=runs_root, latency_ms=latency_ms)\n"
         "console"),
])

HERE.mkdir(exist_ok=True)
nbf.write(live, HERE / "live_call.ipynb")
nbf.write(report, HERE / "report.ipynb")
nbf.write(batch, HERE / "batch.ipynb")
print("wrote", *(HERE / n for n in ("report.ipynb", "batch.ipynb", "live_call.ipynb")))
