"""`voicelab experiment`, `voicelab compare` and `voicelab mutate`: the experimenter's commands
(cli.py holds the parser's shared parts and the everyday commands)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

from voicelab.lab import signals
from voicelab.spec.errors import VoiceLabError
from voicelab.surfaces import crashlog

EXIT_CODES_GATE = """exit status (for CI):
  0    the gates passed: every persona reached its pass_threshold (default: every call), or with
       --fail-under the overall pass rate reached it (personas with their own pass_threshold still count)
  1    a gate failed (the reasons are printed)
  2    bad input or settings: nothing was placed (or the run store could not be written: the line
       names the path; every finished result is kept)
  3    an internal failure (one line naming a traceback log); a gate decided before it still decides
  130  interrupted by Ctrl+C (143 SIGTERM, 129 SIGHUP): what finished is stored; --resume continues"""
EPILOG_EXPERIMENT = """examples:
  voicelab experiment experiments/chargeback-reason.yaml
  voicelab experiment experiments/chargeback-latency.yaml --repeats 10 --junit reports/junit.xml
  voicelab experiment experiments/chargeback-reason.yaml --resume chargeback-reason-20261121-101500"""
EPILOG_COMPARE = """examples:
  voicelab compare nightly-41 nightly-42 --fail-if-worse
  voicelab compare chargeback-reason-20261121-101500:as-written chargeback-reason-20261121-101500:forgets-reason

exit status:
  0    the candidate is not worse (or --fail-if-worse not given)
  1    --fail-if-worse and the candidate is worse: significantly lower pass rate (one-sided Fisher
       exact test, alpha 0.05), any single persona worse (its test Holm-adjusted over the personas,
       or every call it passed now failing, 2+ calls a side), or p95 response latency worse by more
       than --latency-margin-ms; the reasons name the personas and their newly failing checks
  2    bad input (unknown run or variant)
  3    an internal failure (one line naming a traceback log); the decision above is printed first
       and, when the report is what failed, still decides the exit status"""
EPILOG_MUTATE = """examples:
  voicelab mutate --agent chargeback
  voicelab mutate --agent applicant-screening --only drop-sentence skip-step --json
  voicelab run --resume mutate-chargeback-20261121-101500     # an interrupted mutation run

exit status: 0 the run finished (read the score); 1 --min-score given and not reached;
2 bad input; 130/143/129 interrupted (--resume continues)"""


def cluster_address(text: str) -> str:
    """An argparse type: a --cluster value (syntax only; nothing is imported or reached yet)."""
    from voicelab.lab.cluster import address_problem

    problem = address_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def add_cluster_arg(p: argparse.ArgumentParser) -> None:
    """--cluster, the same on `run`, `experiment` and `mutate`."""
    p.add_argument("--cluster", type=cluster_address, metavar="ADDRESS",
                   help="place the calls on a Dask cluster: a running scheduler's address (tcp://HOST:8786; start "
                        "workers with `dask worker ADDRESS` on machines with voicelab installed) or local:N (N "
                        "worker processes on this machine). This process still stores every result; --concurrency "
                        "is then per worker. Needs pip install 'voicelab[cluster]'")


def add_parsers(sub: Any, fmt: type, number, rate, run_id) -> None:  # noqa: ANN001 - argparse sub-parsers
    p = sub.add_parser("experiment", help="run every variant of an experiment file in one run and compare them",
                       epilog=EPILOG_EXPERIMENT, formatter_class=fmt,
                       description="Place every persona x repeat of an experiment file once per variant, "
                                   "interleaved across variants, into one resumable run; print each variant "
                                   "against the first and write the HTML report with intervals, exact tests "
                                   "and bootstrap latency differences.\n\n" + EXIT_CODES_GATE)
    p.add_argument("file", nargs="?", metavar="FILE", help="the experiment YAML file (see docs/formats.md)")
    p.add_argument("--repeats", type=number(int, 1, 10_000), metavar="N", help="override the file's repeats")
    p.add_argument("--concurrency", type=number(int, 1, 1024), metavar="N", help="override the file's concurrency")
    p.add_argument("--run-id", type=run_id, metavar="ID", help="name of the run (default: <id>-<UTC time>)")
    p.add_argument("--resume", type=run_id, metavar="RUN_ID", help="continue a stored experiment run")
    add_cluster_arg(p)
    _add_output_args(p, rate)

    p = sub.add_parser("compare", help="compare two stored runs or variants, optionally as a CI gate",
                       epilog=EPILOG_COMPARE, formatter_class=fmt,
                       description="Compare a candidate with a baseline (each RUN or RUN:VARIANT): pass rate per "
                                   "persona with Wilson intervals and Fisher's exact test, regressions, latency "
                                   "p50/p95 and duration with bootstrap intervals, flaky personas, and how many "
                                   "calls a difference would need. Prints the decision and writes an HTML report.")
    p.add_argument("base", metavar="BASE", help="the baseline: RUN or RUN:VARIANT")
    p.add_argument("candidate", metavar="CANDIDATE", help="the candidate: RUN or RUN:VARIANT")
    p.add_argument("--fail-if-worse", action="store_true", help="exit 1 when the candidate is worse (see below)")
    p.add_argument("--latency-margin-ms", type=number(float, 0), default=100.0, metavar="MS",
                   help="p95 latency worse by more than this counts as worse (default: %(default)s)")
    _add_store_args(p)
    p.add_argument("--json", action="store_true", help="print the decision and tables as JSON")

    p = sub.add_parser("mutate", help="mutation testing: would the personas notice a broken agent?",
                       epilog=EPILOG_MUTATE, formatter_class=fmt,
                       description="Derive mutants of a local agent spec (each a plausible bug), run the agent's "
                                   "personas against the original and every mutant in one resumable run, and "
                                   "report the mutation score: mutants caught by at least one failing check, "
                                   "with every survivor and what would catch it.")
    p.add_argument("--agent", required=True, metavar="ID", help="the agent spec to mutate")
    p.add_argument("--personas", default="datasets/personas", metavar="PATH",
                   help="a persona YAML file or a folder of them (default: %(default)s)")
    p.add_argument("--agents", default="datasets/agents", metavar="DIR",
                   help="folder of agent spec YAML files (default: %(default)s)")
    p.add_argument("--only", nargs="+", metavar="WORD", help="only mutants whose id contains one of these words "
                                                             "(e.g. drop-sentence wrong-arg m07)")
    p.add_argument("--repeats", type=number(int, 1, 100), default=1, metavar="N", help="calls per persona and "
                                                                                       "mutant (default: 1)")
    p.add_argument("--concurrency", type=number(int, 1, 1024), default=8, metavar="N",
                   help="calls at once (default: 8)")
    p.add_argument("--run-id", type=run_id, metavar="ID", help="name of the run (default: mutate-<agent>-<time>)")
    p.add_argument("--min-score", type=rate, metavar="RATE", help="exit 1 when the score is under this (0.9 or 90%%)")
    add_cluster_arg(p)
    _add_store_args(p)
    p.add_argument("--json", action="store_true", help="print the score, calls, wall time and survivors as JSON")


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default="runs", metavar="DIR", help="where runs are stored (default: runs)")
    p.add_argument("--reports", default="reports", metavar="DIR", help="where reports go (default: reports)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")


def _add_output_args(p: argparse.ArgumentParser, rate) -> None:  # noqa: ANN001
    _add_store_args(p)
    p.add_argument("--fail-under", type=rate, metavar="RATE",
                   help="pass when at least this share of calls succeeded (0.9 or 90%%) instead of every call")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML: one test case per persona (per variant)")


def finish_run(outcome, args: argparse.Namespace, *, resume_hint: str) -> int:  # noqa: ANN001 - BatchOutcome
    """What `run` and `experiment` do after placing calls: summary, report, JUnit, gates.

    A run without variants and without --junit is summed up and gated from its results
    (voicelab/lab/gates.py, the same rules): pandas, the tables and the statistics libraries
    load only for an experiment, JUnit XML or a report, so a one-call run ends at once."""
    from voicelab.surfaces.cli.text import replay_text, summary_text, summary_text_of

    run = outcome.run
    run_id = run.run_id
    print(f"\nrun {run_id}: {run.path}")
    results = run.results()
    tables = None
    if run.manifest.variants or getattr(args, "junit", None) or any(r.variant is not None for r in results):
        from voicelab.lab.tables import load_runs

        tables = load_runs(run_id, root=args.runs)
        print(summary_text(tables))
    else:
        print(summary_text_of(results))
    if replays := replay_text(results):  # what changed since the recorded calls, turn by turn
        print("\n" + replays)
    if tables is not None and run.manifest.variants and run.manifest.kind == "experiment":
        print("\n" + experiment_text(tables))
    if outcome.interrupted:
        print(f"\ninterrupted ({outcome.stopped_by}): what finished is stored; continue with `{resume_hint} {run_id}`")
        return signals.exit_code()
    if tables is not None:
        from voicelab.lab.junit import gate_failures

        reasons, kpis = gate_failures(tables, args.fail_under), tables.kpis()
    else:
        from voicelab.lab.gates import gate_failures_of, kpis_of

        reasons, kpis = gate_failures_of(results, {run_id: run.manifest}, args.fail_under), kpis_of(results)
    # decided and printed first: nothing later can lose it
    if args.fail_under is not None and not reasons:
        print(f"{kpis['success_rate']:.0%} of calls succeeded: at least --fail-under {args.fail_under:.0%}")
    for reason in reasons:
        print(f"gate failed: {reason}")
    print("gates: " + ("FAILED (exit 1)" if reasons else "passed"), flush=True)
    if getattr(args, "junit", None):
        from voicelab.lab.junit import write_junit

        _tolerant("JUnit XML", lambda: write_junit(tables, args.junit))
    if not args.no_report:
        from voicelab.report.build import build_report  # its libraries load only for a report

        print("\nwriting the report ...", flush=True)
        _tolerant("report", lambda: build_report(run_id, runs_root=args.runs, reports_dir=args.reports))
    return 1 if reasons else 0


def _tolerant(what: str, write) -> None:  # noqa: ANN001 - a callable returning the path written
    """Write an artifact (report, JUnit XML) after the verdict is decided: print its path, or one
    line saying why it could not be written; the verdict, not this, decides the exit status."""
    try:
        print(f"{what}: {write()}", flush=True)
    except (VoiceLabError, OSError) as exc:
        print(f"voicelab: {what} not written: {exc}", flush=True)
    except Exception as exc:  # a bug in the report: logged, and the verdict still stands
        print(f"voicelab: {what} not written: {crashlog.one_line(exc)}", flush=True)


def experiment_text(tables) -> str:  # noqa: ANN001 - Tables
    """Each variant against the first, one block each: the decision lines of `compare`."""
    from voicelab.lab.compare import decide, variant_sides

    sides = variant_sides(tables)
    lines = []
    for other in sides[1:]:
        d = decide(sides[0], other)
        verdict = "WORSE: " + "; ".join(d.reasons) if d.worse else "not worse"
        lines.append(f"{other.label} vs {sides[0].label}: {verdict}")
        lines += [f"  {line}" for line in d.evidence]
    return "\n".join(lines)


def cmd_experiment(args: argparse.Namespace) -> int:
    from voicelab.lab.batch import resume_batch
    from voicelab.lab.experiment import run_experiment
    from voicelab.spec.errors import UsageError

    if args.resume:
        if args.repeats or args.concurrency or args.run_id:
            raise UsageError("--repeats, --concurrency and --run-id cannot change a run being resumed: drop them")
        outcome = resume_batch(args.resume, runs_root=args.runs, cluster=args.cluster)
    elif not args.file:
        raise UsageError("give the experiment FILE (e.g. experiments/chargeback-reason.yaml), or --resume RUN_ID")
    else:
        outcome = run_experiment(args.file, run_id=args.run_id, runs_root=args.runs, repeats=args.repeats,
                                 concurrency=args.concurrency, cluster=args.cluster)
    return finish_run(outcome, args, resume_hint="voicelab experiment --resume")


def cmd_compare(args: argparse.Namespace) -> int:
    from voicelab.lab.compare import decide, latency_comparison, load_side, parse_ref, persona_comparison
    from voicelab.lab.store import RunStore
    from voicelab.report.build import build_comparison

    for ref in (args.base, args.candidate):
        RunStore(args.runs).require_inside(parse_ref(ref)[0])
    base, cand = load_side(args.base, args.runs), load_side(args.candidate, args.runs)
    decision = decide(base, cand, args.latency_margin_ms)
    table = persona_comparison(base, cand)
    if args.json:
        print(json.dumps({"base": decision.base, "candidate": decision.candidate, "worse": decision.worse,
                          "reasons": decision.reasons, "evidence": decision.evidence,
                          "worse_personas": decision.personas, "newly_failing": decision.newly_failing,
                          "personas": json.loads(table.to_json(orient="records")),
                          "latency": json.loads(latency_comparison(base, cand).to_json(orient="records"))}, indent=2))
    else:
        print(f"{cand.label} vs {base.label}: " + ("WORSE" if decision.worse else "not worse"))
        for reason in decision.reasons:
            print(f"  worse: {reason}")
        for line in decision.evidence:
            print(f"  {line}")
        print(f"\n  {'persona':32} {'baseline':>9} {'candidate':>9} {'diff':>6} {'Fisher p':>9}  newly failing checks")
        for r in table.itertuples():
            flag = " REGRESSION" if r.regression else ""
            print(f"  {str(r.persona_id)[:32]:32} {r.base_passed:>4}/{r.base_calls:<4} {r.cand_passed:>4}/"
                  f"{r.cand_calls:<4} {_points(r.difference):>6} {_p(r.p_value):>9}  "
                  f"{textwrap.shorten(r.newly_failing, 50) or '-'}{flag}")
    if not args.no_report:
        print()
        _tolerant("report", lambda: build_comparison(args.base, args.candidate, runs_root=args.runs,
                                                     reports_dir=args.reports,
                                                     latency_margin_ms=args.latency_margin_ms))
    return 1 if args.fail_if_worse and decision.worse else 0


def cmd_mutate(args: argparse.Namespace) -> int:
    import time

    from voicelab.lab.mutate import run_mutation, score
    from voicelab.report.build import build_report

    started = time.monotonic()
    outcome = run_mutation(args.agent, args.personas, args.agents, run_id=args.run_id, runs_root=args.runs,
                           concurrency=args.concurrency, repeats=args.repeats, only=args.only,
                           progress=not args.json, cluster=args.cluster)
    wall = time.monotonic() - started
    result = score(outcome.run.run_id, args.runs)
    if outcome.interrupted:
        print(f"interrupted ({outcome.stopped_by}): continue with `voicelab run --resume {outcome.run.run_id}`")
        return signals.exit_code()
    report, report_error = None, None  # the score is decided: a report that fails cannot lose it
    if not args.no_report:
        try:
            report = build_report(outcome.run.run_id, runs_root=args.runs, reports_dir=args.reports)
        except Exception as exc:  # noqa: BLE001 - said in one line; the score still decides
            report_error = str(exc) if isinstance(exc, VoiceLabError | OSError) else crashlog.one_line(exc)
    if args.json:
        print(json.dumps({**result.as_dict(), "wall_s": round(wall, 1),
                          "report": str(report) if report else None, "report_error": report_error}, indent=2))
    else:
        print(f"\nmutation score {result.score:.2f}: {result.caught} of {len(result.mutants)} mutants of "
              f"{args.agent} caught ({result.calls} calls in {wall:.0f} s, run {outcome.run.run_id})")
        if result.failing_original:
            print(f"personas failing against the original (they catch nothing): {', '.join(result.failing_original)}")
        for m in result.survivors:
            print(f"  survived {m.id}: {m.change}\n    would be caught by: {m.catch_hint}")
        for m in result.invalid:  # no call against it ran: no check could notice, so it is not scored
            print(f"  not run {m.id}: {m.change}\n    {m.not_run}; not in the score")
        if report:
            print(f"report: {report}")
    if report_error:
        print(f"voicelab: report not written: {report_error}", file=sys.stderr if args.json else sys.stdout)
    # no mutant ran (score NaN): a --min-score gate cannot have been reached
    return 1 if args.min_score is not None and not result.score >= args.min_score else 0


def _p(v: float) -> str:
    return "" if v != v else f"{v:.3g}"


def _points(v: float) -> str:
    return "" if v != v else f"{v * 100:+.0f}"


COMMANDS = {"experiment": cmd_experiment, "compare": cmd_compare, "mutate": cmd_mutate}
