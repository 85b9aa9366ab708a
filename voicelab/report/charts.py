"""Tables -> matplotlib Figures. Pure functions; they never call plt.show().

Figures are built with the object API (no pyplot state), so they are safe in threads and batch
processes; a notebook shows them with `display(fig)`.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from voicelab.spec.checks import percentile

PASS, FAIL, NEUTRAL = "#2e7d32", "#c62828", "#1565c0"


def _empty(fig: Figure, title: str, message: str) -> Figure:
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontweight="bold")
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#555")
    ax.set_axis_off()
    return fig


def _height(n: int) -> float:
    return max(2.5, 0.38 * n + 1.3)


def success_by_persona(calls: pd.DataFrame) -> Figure:
    """Share of successful calls per persona, worst first, with the number of calls."""
    title = "Success rate by persona"
    if calls.empty:
        return _empty(Figure(figsize=(8, 2.5)), title, "no calls")
    grouped = calls.groupby("persona_id")["success"].agg(["mean", "count"]).sort_values(["mean", "count"])
    fig = Figure(figsize=(8, _height(len(grouped))), layout="constrained")
    ax = fig.add_subplot()
    colors = [PASS if rate == 1 else (FAIL if rate == 0 else "#f9a825") for rate in grouped["mean"]]
    bars = ax.barh(grouped.index, grouped["mean"] * 100, color=colors)
    for bar, rate, count in zip(bars, grouped["mean"], grouped["count"], strict=True):
        ax.text(min(bar.get_width() + 1, 101), bar.get_y() + bar.get_height() / 2,
                f"{rate:.0%} of {count}", va="center", fontsize=8)
    ax.set_xlim(0, 115)
    ax.set_xlabel("successful calls (%)")
    ax.set_title(title, loc="left", fontweight="bold")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


#: Dots per persona in the charts that draw calls as dots; a bigger run draws a sample, spread
#: over the run (the boxes, bars and histograms always count every call).
DOTS = 300


def _dots(n: int, limit: int = DOTS) -> np.ndarray:
    """Which of n calls to draw as dots: all of up to `limit`, else `limit` evenly spaced."""
    return np.arange(n) if n <= limit else np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def duration_by_persona(calls: pd.DataFrame) -> Figure:
    """Distribution of call durations per persona (box over every call, calls as dots: every one
    of up to DOTS a persona, else a sample of DOTS spread over the run)."""
    title = "Call duration by persona"
    if calls.empty:
        return _empty(Figure(figsize=(8, 2.5)), title, "no calls")
    order = calls.groupby("persona_id")["duration_s"].median().sort_values().index.tolist()
    rows = calls.groupby("persona_id").indices  # persona -> its rows, in run order
    durations, success = calls["duration_s"].to_numpy(dtype=float), calls["success"].to_numpy()
    data = [durations[rows[p]] for p in order]
    fig = Figure(figsize=(8, _height(len(order))), layout="constrained")
    ax = fig.add_subplot()
    ax.boxplot(data, orientation="horizontal", tick_labels=order, widths=0.6, showfliers=False,
               medianprops={"color": NEUTRAL})
    sampled = False
    for i, p in enumerate(order, 1):
        picked = rows[p][_dots(len(rows[p]))]
        sampled |= len(picked) < len(rows[p])
        ax.scatter(durations[picked], [i] * len(picked), s=12, alpha=0.7, zorder=3,
                   c=[PASS if s else FAIL for s in success[picked]])
    dots = f"dots: {DOTS} calls per persona, spread over the run" if sampled else "dots: calls"
    ax.set_xlabel(f"duration (s); {dots}, green passed, red failed")
    ax.set_title(title, loc="left", fontweight="bold")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def latency_distribution(turns: pd.DataFrame) -> Figure:
    """Histogram of per-turn agent response latency, with p50 and p95 marked."""
    title = "Agent response latency per turn"
    values = turns["latency_ms"].dropna().tolist() if not turns.empty else []
    fig = Figure(figsize=(8, 3.5), layout="constrained")
    if not values:
        return _empty(fig, title, "no agent turns that answered the caller")
    ax = fig.add_subplot()
    ax.hist(values, bins=min(40, max(5, len(values) // 5)), color="#90a4ae", edgecolor="white")
    # p50 labelled left of its line, p95 right of its line and lower: on a tight distribution the
    # two lines are a few pixels apart and labels at one spot would print over each other
    top = ax.get_ylim()[1]
    for q, style, align, height in ((50, "-", "right", 0.95), (95, "--", "left", 0.80)):
        v = percentile(values, q)
        ax.axvline(v, color=NEUTRAL if q == 50 else FAIL, linestyle=style, linewidth=1.5)
        label = f"p{q} {v:.0f} ms "if align == "right" else f" p{q} {v:.0f} ms"
        ax.text(v, top * height, label, color=NEUTRAL if q == 50 else FAIL, va="top", ha=align, fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    ax.set_xlabel("response latency (ms): caller's turn to the agent's answer")
    ax.set_ylabel("agent turns")
    ax.set_title(title, loc="left", fontweight="bold")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def failed_checks(calls: pd.DataFrame, top: int = 12) -> Figure:
    """The checks that failed most often, across all calls."""
    title = "Checks failed most often"
    names = [n.strip() for cell in calls.get("failed_checks", pd.Series(dtype=str))
             if isinstance(cell, str) for n in cell.split(",") if n.strip()]
    if not names:
        return _empty(Figure(figsize=(8, 2.2)), title, "no failed checks")
    counts = pd.Series(names).value_counts().head(top).sort_values()
    fig = Figure(figsize=(8, _height(len(counts))), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(counts.index, counts.to_numpy(), color=FAIL)
    ax.set_xlabel("calls where the check failed")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title, loc="left", fontweight="bold")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def voice_quality(calls: pd.DataFrame) -> Figure:
    """Voice calls: how well the agent heard the caller (word error rate) and who talked how much
    (talk ratio: the caller's speaking time over the agent's), per persona, calls as dots (a
    sample of DOTS per persona in a bigger run)."""
    title = "Voice: word error rate and talk ratio by persona"
    voice = calls[calls["mode"] == "voice"] if not calls.empty else calls
    if voice.empty or (voice["wer"].isna().all() and voice["talk_ratio"].isna().all()):
        return _empty(Figure(figsize=(8, 2.2)), title, "no voice calls")
    order = sorted(voice["persona_id"].unique())
    rows = voice.groupby("persona_id").indices
    fig = Figure(figsize=(8, _height(len(order))), layout="constrained")
    wer_ax, talk_ax = fig.subplots(1, 2, sharey=True)
    for ax, column, label in ((wer_ax, "wer", "word error rate (what the agent heard)"),
                              (talk_ax, "talk_ratio", "talk ratio: caller's speech / agent's")):
        for i, persona in enumerate(order):
            mine = voice.iloc[rows[persona]]
            picked = mine.iloc[_dots(len(mine))]
            values = picked[column].dropna()
            ax.scatter(values, [i] * len(values), s=24, alpha=0.8, zorder=3,
                       c=[PASS if ok else FAIL for ok in picked.loc[values.index, "success"]])
        ax.set_xlim(-0.03, max(1.03, float(voice[column].max()) * 1.08 if voice[column].notna().any() else 1.03))
        ax.set_xlabel(label)
        ax.grid(axis="x", color="#eee")
        ax.spines[["top", "right"]].set_visible(False)
    wer_ax.set_yticks(range(len(order)), order)
    wer_ax.set_title(title, loc="left", fontweight="bold")
    return fig


def by_condition(table: pd.DataFrame) -> Figure:
    """Success rate, WER and latency side by side, one bar per audio condition (tables.by_condition)."""
    title = "Voice calls by audio condition"
    if table.empty:
        return _empty(Figure(figsize=(8, 2.5)), title, "no voice calls")
    fig = Figure(figsize=(11, _height(len(table))), layout="constrained")
    labels = table["condition"].tolist()
    y = range(len(labels))
    for i, (column, label, color) in enumerate((("success_rate", "success rate", PASS), ("wer", "WER", FAIL),
                                                ("latency_p50_ms", "response latency p50 (ms)", NEUTRAL))):
        ax = fig.add_subplot(1, 3, i + 1)
        values = table[column].astype(float).fillna(0).tolist()
        ax.barh(list(y), values, color=color)
        ax.set_yticks(list(y), labels if i == 0 else [""] * len(labels))
        ax.invert_yaxis()
        ax.set_xlabel(label)
        if column == "success_rate":
            ax.set_xlim(0, 1)
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(title, x=0.01, ha="left", fontweight="bold")
    return fig


def figures(calls: pd.DataFrame, turns: pd.DataFrame) -> list[Figure]:
    """The report's charts for these tables: the four for every run, the voice one for voice runs."""
    out = [chart(turns if chart is latency_distribution else calls) for chart in ALL]
    if not calls.empty and (calls["mode"] == "voice").any():
        out.append(voice_quality(calls))
    return out


def png(fig: Figure, dpi: int = 100):  # noqa: ANN201 - IPython.display.HTML
    """A figure as an inline PNG <img> with its title as alt text, for notebooks and reports.
    Works whatever matplotlib backend the kernel has, and the HTML export keeps the alt text."""
    from IPython.display import HTML

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    title = next((ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")), "chart")
    data = base64.b64encode(buffer.getvalue()).decode()
    return HTML(f'<img class="vl-chart" alt="{html.escape(title)}" src="data:image/png;base64,{data}"/>')


ALL = (success_by_persona, duration_by_persona, latency_distribution, failed_checks)


def success_by_side(success: pd.DataFrame) -> Figure:
    """Pass rate per persona and side (variant or run) with its 95% Wilson interval."""
    title = "Pass rate by persona and variant (95% Wilson interval)"
    if success.empty:
        return _empty(Figure(figsize=(8, 2.5)), title, "no calls")
    sides = list(dict.fromkeys(success["side"]))
    personas = list(dict.fromkeys(success["persona_id"]))
    fig = Figure(figsize=(8, _height(len(personas) * max(1, len(sides)) * 0.6 + 1)), layout="constrained")
    ax = fig.add_subplot()
    height = 0.8 / len(sides)
    palette = ["#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#558b2f", "#ad1457"]
    for i, side in enumerate(sides):
        part = success[success["side"] == side].drop_duplicates("persona_id").set_index("persona_id")
        part = part.reindex(personas)
        ys = [p + i * height for p in range(len(personas))]
        rate = (part["rate"].astype(float) * 100).fillna(0)
        # never negative, whatever rounding did to an interval's end (Wilson's 0.9999999999999999)
        err = [(rate - part["ci_low"].astype(float) * 100).fillna(0).clip(lower=0),
               (part["ci_high"].astype(float) * 100 - rate).fillna(0).clip(lower=0)]
        ax.barh(ys, rate, height=height, color=palette[i % len(palette)], label=side, xerr=err,
                error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#333"})
    ax.set_yticks([p + height * (len(sides) - 1) / 2 for p in range(len(personas))], personas)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel("successful calls (%)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, loc="left", fontweight="bold")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def latency_by_side(turns: dict[str, pd.Series]) -> Figure:
    """Response latency per side (variant or run): box plots with p50 and p95 marked."""
    title = "Response latency by variant"
    data = {label: values.dropna().astype(float) for label, values in turns.items()}
    if not any(len(v) for v in data.values()):
        return _empty(Figure(figsize=(8, 2.5)), title, "no latency measured")
    fig = Figure(figsize=(8, _height(len(data))), layout="constrained")
    ax = fig.add_subplot()
    labels = list(data)
    ax.boxplot([data[label].to_numpy() for label in labels], orientation="horizontal", tick_labels=labels,
               showfliers=False)
    for y, label in enumerate(labels, 1):
        values = data[label].tolist()
        if values:
            p95 = percentile(values, 95)
            ax.plot([p95], [y], marker="|", markersize=14, color=FAIL)
            ax.text(p95, y + 0.3, f"p95 {p95:.0f} ms", fontsize=8, color=FAIL)
    ax.set_xlabel("ms from the end of the caller's turn to the agent's answer")
    ax.set_title(title, loc="left", fontweight="bold")
    ax.spines[["top", "right"]].set_visible(False)
    return fig
