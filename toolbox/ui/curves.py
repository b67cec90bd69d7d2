"""The Train page's live curves and summary, from a training job's events: loss per series, learning
rate, and AP / AP50 per evaluation, as typed tables for Gradio's LinePlot."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import gradio as gr
import pandas as pd

from .jobs import JobView

MAIN_LOSS = re.compile(r"^loss(_[a-z]+)?$")


LOSS_COLUMNS = {"step": "int64", "value": "float64", "series": "string"}
LR_COLUMNS = {"step": "int64", "lr": "float64"}
MAP_COLUMNS = {"step": "int64", "value": "float64", "series": "string"}


def typed(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    """A plot table with fixed column types, even when empty.

    Why: Gradio's LinePlot builds its chart once, from the column types of the first table it gets, and
    later only swaps the data; an empty table has `object` columns, which it takes as categories, so the
    chart would plot numbers as unordered text labels for the rest of the page's life.
    """
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def curves(view: JobView | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(loss, lr, mAP) tables for the line plots, from a job's log and eval events: numeric step and
    value columns, one series per main loss, lr on its own, AP and AP50 per evaluation."""
    loss_rows, lr_rows, map_rows = [], [], []
    for ev in (view.events if view else []):
        if ev.get("type") == "log" and ev.get("step") is not None:
            step = int(ev["step"])
            losses = ev.get("losses") or {}
            names = [n for n in losses if MAIN_LOSS.match(n) and not any(t in n for t in ("aux", "dn", "enc"))]
            for n in names or list(losses):
                if losses[n] is not None:
                    loss_rows.append({"step": step, "value": float(losses[n]), "series": n})
            if ev.get("lr") is not None:
                lr_rows.append({"step": step, "lr": float(ev["lr"])})
        elif ev.get("type") == "eval":
            m = ev.get("metrics") or {}
            step = int(ev.get("step") or 0)
            for k in ("AP", "AP50"):
                if m.get(k) is not None:
                    map_rows.append({"step": step, "value": float(m[k]), "series": k})
    return typed(loss_rows, LOSS_COLUMNS), typed(lr_rows, LR_COLUMNS), typed(map_rows, MAP_COLUMNS)


def series_of(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["series"].tolist()))


@dataclass
class PlotsShown:
    """What the browser's plots show: the events stamp, and per coloured plot the series of its data and
    of its legend.

    Why the legend is tracked: LinePlot takes its colours and legend from the data it had when the chart
    was built, and later only swaps the data. When the series change (the first log, the first
    evaluation) the legend must be named (`colors_in_legend`), which rebuilds the chart from the data it
    holds at that moment; sent together with new data, the rebuild would use the old data. So new data
    goes first, and the legend right after it, in a call of its own (`.then`).
    """

    stamp: list | None = None
    data: dict = field(default_factory=dict)     # plot → series of the data on screen
    legend: dict = field(default_factory=dict)   # plot → series named in its legend

    @classmethod
    def of(cls, value) -> "PlotsShown":
        return value if isinstance(value, PlotsShown) else cls()

    def legend_update(self, plot: str):
        """Name the legend when the plot's data has series its legend lacks, else no update."""
        series = self.data.get(plot)
        if not series or self.legend.get(plot) == series:
            return gr.skip()
        self.legend[plot] = series
        return gr.update(colors_in_legend=series)


def run_summary(view: JobView | None) -> str:
    if view is None:
        return ""
    best = None
    for ev in view.events:
        if ev.get("type") == "eval":
            ap = (ev.get("metrics") or {}).get("AP")
            if ap is not None and (best is None or ap > best):
                best = ap
    parts = []
    if best is not None:
        parts.append(f"best AP so far: **{best:.3f}**")
    if view.status == "ok":
        parts.append("finished: evaluate it on **3 · Evaluate** or export it on **4 · Export & deploy**")
    return " · ".join(parts)
