"""A picture of every run: one migration's journal drawn as an SVG timeline, and a compact text
version of it for the terminal.

One row per step on a time axis in seconds from the migration's start (`migration-started`): a
bar per attempt (a resumed run shows the interrupted attempt and the one that finished), a row per
undo (`undo <step>`, its own colour), the write-unavailability window shaded over every row, the
token read and the promotion marked with a vertical line and a label, and the gate samples' replay
lag as a line on its own axis under the bars. The window is the one `engine.summary` measures
(`source_read_only_at` to `target_writable_at` in the steps' facts); a run that promoted nothing
shades the source's read-only time until the undo was confirmed, or to the end when it was not.

Hand-written SVG with the standard library: no plotting dependency, a fixed 960-pixel-wide
viewBox that stays crisp at any zoom. Everything read from the journal is untrusted (step ids,
errors, facts are whatever the file holds): every text is masked, stripped of characters XML
cannot carry and escaped; a record that does not parse is left out of the picture, never an
exception that would hide the run's outcome.

The drawing takes rows of spans, so the fleet picture (`fleet_gantt`: one row per service, its run
as a span and its own window) is the same code with other rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from migrator.durable import write_private
from migrator.model.secrets import mask
from migrator.render.gate_samples import sample_lag_bytes

# ---- the picture as data -------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One bar: seconds from second 0; `end` None when it never ended (drawn to the end)."""

    start: float
    end: float | None
    status: str  # done | failed | interrupted | undo | undo-unchanged
    note: str = ""  # the bar's tooltip


@dataclass
class Row:
    label: str
    kind: str  # step | undo | service
    spans: list[Span] = field(default_factory=list)
    window: Window | None = None  # a fleet row's own write-unavailability window


@dataclass(frozen=True)
class Window:
    start: float
    end: float | None  # None: not closed (the source stayed read-only to the end of the journal)
    how: str  # promoted | undone | open

    def seconds(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True)
class Marker:
    at: float
    label: str
    kind: str  # token | promotion | refused | resumed | rollback | lock-lost


@dataclass
class Timeline:
    title: str
    origin: str  # the UTC time of second 0
    duration: float
    rows: list[Row]
    window: Window | None = None
    markers: list[Marker] = field(default_factory=list)
    # (second, replay lag bytes, the gate that sampled it): one line per gate, none across gaps.
    lag: list[tuple[float, int, str]] = field(default_factory=list)


# ---- journal records -> Timeline -----------------------------------------------------------


def _time(value: Any) -> float | None:
    """A journal timestamp as UNIX seconds; None for anything that is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _facts(record: dict[str, Any]) -> dict[str, Any]:
    facts = record.get("facts")
    return facts if isinstance(facts, dict) else {}


class _Builder:
    """Walks one migration's records in order, keeping the open attempt of each step and undo."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.rows: dict[tuple[str, str], Row] = {}
        self.open: dict[tuple[str, str], tuple[float, str]] = {}  # row key -> (start, note)
        self.markers: list[Marker] = []
        self.lag: list[tuple[float, int, str]] = []
        self.last = 0.0  # the latest second seen: where an attempt cut off by a crash ends
        self.runs = 0

    def row(self, kind: str, step: str) -> Row:
        key = (kind, step)
        if key not in self.rows:
            self.rows[key] = Row(step if kind == "step" else f"undo {step}", kind)
        return self.rows[key]

    def begin(self, kind: str, step: str, at: float, note: str = "") -> None:
        self.row(kind, step)
        self.open[(kind, step)] = (at, note)

    def end(self, kind: str, step: str, at: float | None, status: str, note: str = "") -> None:
        start, started_note = self.open.pop((kind, step), (at if at is not None else self.last, ""))
        self.row(kind, step).spans.append(Span(start, at, status, note or started_note))

    def cut_off(self, at: float | None) -> None:
        """Every attempt still open was interrupted (a crash, a kill) by `at`, or never ended."""
        for kind, step in list(self.open):
            self.end(kind, step, at, "interrupted", "interrupted: no end in the journal")

    def take(self, record: dict[str, Any], at: float) -> None:
        event = record.get("event")
        step = record.get("step")
        step = str(step) if step is not None else None
        if event == "run-started":
            self.runs += 1
            if self.runs > 1:
                self.cut_off(self.last)
                self.markers.append(Marker(at, "resumed", "resumed"))
        elif event == "step-started" and step:
            self.begin("step", step, at)
        elif event == "step-done" and step:
            # `step-in-place` (precheck found nothing to send; every gate-only step says so) is
            # not a status of its own: the step still ran its gate.
            self.end("step", step, at, "done")
            # A streaming gate's passing measurement ends its lag line (gate_samples.py).
            lag = _facts(record).get("lag_bytes")
            if isinstance(lag, int) and not isinstance(lag, bool) and lag >= 0:
                self.lag.append((at, lag, step))
        elif event == "step-failed" and step:
            self.end("step", step, at, "failed", f"failed: {record.get('error')}")
        elif event == "undo-started" and step:
            self.begin("undo", step, at)
        elif event == "undo-done" and step:
            changed = record.get("changed") is not False
            self.end("undo", step, at, "undo" if changed else "undo-unchanged", "" if changed else "nothing to undo")
        elif event == "promotion-attempted":
            self.markers.append(Marker(at, "promotion sent", "promotion"))
        elif event == "promotion-refused":
            self.markers.append(Marker(at, "promotion refused", "refused"))
        elif event == "rollback-started":
            self.markers.append(Marker(at, "rollback", "rollback"))
        elif event == "lock-lost":
            self.markers.append(Marker(at, "lock lost", "lock-lost"))
        elif event == "gate-sample" and (lag := sample_lag_bytes(record)) is not None:
            self.lag.append((at, lag, str(record.get("step") or record.get("before") or "")))
        self.last = max(self.last, at)


def _window(records: list[tuple[float, dict[str, Any]]], origin: float) -> Window | None:
    """engine.summary's window (the first `source_read_only_at` and `target_writable_at` of the
    steps' done facts); without a promotion, read-only until the undo of the demoting step was
    confirmed, or to the end."""
    done: dict[str, dict[str, Any]] = {}
    for _, record in records:
        if record.get("event") == "step-done":
            done.setdefault(str(record.get("step")), _facts(record))
    read_only = next((_time(f["source_read_only_at"]) for f in done.values() if "source_read_only_at" in f), None)
    writable = next((_time(f["target_writable_at"]) for f in done.values() if "target_writable_at" in f), None)
    if read_only is not None and writable is not None:
        return Window(read_only - origin, writable - origin, "promoted")
    demoting: str | None = None
    for at, record in records:
        facts = _facts(record)
        if demoting is None and record.get("event") in ("step-applied", "step-done"):
            read_only = _time(facts.get("source_read_only_at"))
            demoting = str(record.get("step")) if read_only is not None else None
        elif demoting and record.get("event") == "undo-done" and str(record.get("step")) == demoting:
            assert read_only is not None
            return Window(read_only - origin, at - origin, "undone")
    if demoting and read_only is not None:
        return Window(read_only - origin, None, "open")
    return None


def _token_marker(records: list[tuple[float, dict[str, Any]]], origin: float) -> Marker | None:
    for at, record in records:
        facts = _facts(record)
        if record.get("event") == "step-done" and "token" in facts:
            return Marker(at - origin, f"token {facts.get('token_text', facts['token'])}", "token")
    return None


def timeline_from_records(records: Iterable[dict[str, Any]], migration: str) -> Timeline:
    """One migration's picture from the journal's records (every run of it: a resume, an undo)."""
    mine = [
        (at, record)
        for record in records
        if isinstance(record, dict)
        and record.get("migration") == migration
        and (at := _time(record.get("ts"))) is not None
    ]
    if not mine:
        return Timeline(f"migration {migration}", "", 0.0, [])
    origin = mine[0][0]
    build = _Builder(origin)
    for at, record in mine:
        build.take(record, at - origin)
    duration = max(build.last, 0.001)
    build.cut_off(None)
    window = _window(mine, origin)
    markers = build.markers
    if token := _token_marker(mine, origin):
        markers.append(token)
    if window is not None and window.end is not None:
        duration = max(duration, window.end)
    started = next((r for _, r in mine if r.get("event") == "migration-started"), {})
    direction = f" {started.get('source')} -> {started.get('target')}" if started else ""
    return Timeline(
        f"migration {migration}{direction}",
        _iso(origin),
        duration,
        list(build.rows.values()),
        window,
        sorted(markers, key=lambda m: m.at),
        build.lag,
    )


# ---- text ----------------------------------------------------------------------------------

TEXT_COLUMNS = 40
TEXT_LABEL = 30  # with the 40 columns and the seconds, a line fits a 100-column terminal
_GLYPH = {"undo": "<", "undo-unchanged": "<"}


def _column(at: float, duration: float) -> int:
    return min(TEXT_COLUMNS - 1, max(0, int(at / duration * TEXT_COLUMNS)))


def _cells(start: float, end: float, duration: float) -> range:
    return range(_column(start, duration), _column(end, duration) + 1)


def _short(text: str, width: int) -> str:
    """Cut in the middle: step ids differ at either end (`...-target-from-source`)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "~" + text[len(text) - (width - 1 - head) :]


def timeline_text(timeline: Timeline, secrets: Iterable[str] = ()) -> str:
    """A few lines: one per row with a bar of `#` (`<` for an undo) on a fixed scale, the
    write-unavailability window as `|` in every row and a row of its own, then the marks."""
    secrets = list(secrets)
    duration = timeline.duration or 0.001
    window = timeline.window
    window_cells = _cells(window.start, window.end if window.end is not None else duration, duration) if window else []
    width = min(TEXT_LABEL, max([len(r.label) for r in timeline.rows] + [17]))
    lines = [
        f"timeline: 0 to {duration:.1f} s, one column = {duration / TEXT_COLUMNS:.2f} s; "
        "# step, < undo, | write unavailable"
    ]
    for row in timeline.rows:
        cells = [" "] * TEXT_COLUMNS
        for column in window_cells:
            cells[column] = "|"
        for span in row.spans:
            for column in _cells(span.start, span.end if span.end is not None else duration, duration):
                cells[column] = _GLYPH.get(span.status, "#")
        last = row.spans[-1] if row.spans else None
        status = "" if last is None or last.status in ("done", "undo") else f" {last.status}"
        seconds = "" if last is None or last.end is None else f"{last.end - last.start:.3f} s"
        label = _clean(mask(_short(row.label, width), secrets))
        lines.append(f"  {label:<{width}} {''.join(cells)} {seconds}{status}".rstrip())
    if window is not None:
        cells = [" "] * TEXT_COLUMNS
        for column in window_cells:
            cells[column] = "|"
        closed = window.seconds()
        how = {"promoted": "", "undone": " (until the undo)", "open": " (not closed in this run)"}[window.how]
        length = f"{closed:.3f} s" if closed is not None else "open"
        lines.append(f"  {'write unavailable':<{width}} {''.join(cells)} {length}{how}")
    if timeline.markers:
        marks = "; ".join(f"{_clean(mask(m.label, secrets))} at {m.at:.2f} s" for m in timeline.markers)
        lines.append(f"  marks: {marks}")
    return "\n".join(lines)


# ---- SVG -----------------------------------------------------------------------------------

WIDTH = 960
LABEL_WIDTH = 220  # the row labels, left of the plot
PLOT_LEFT = 230
PLOT_RIGHT = WIDTH - 80  # room for the lag axis' labels
ROW_HEIGHT = 18
BAR_HEIGHT = 12
HEADER = 46  # title and subtitle
MARK_LINE = 13  # then one line per marker label: labels never overlap
LAG_HEIGHT = 80
MAX_LAG_DOTS = 300  # a sample every 2 s of an hour-long seed is a line, not 1800 dots
LABEL_CHARS = 32  # 11px monospace (6.6 px a character) within LABEL_WIDTH

COLOURS = {
    "done": "#4c78a8",
    "failed": "#e45756",
    "interrupted": "#bab0ac",
    "undo": "#f58518",
    "undo-unchanged": "#fdd0a2",
}
MARKER_COLOURS = {"token": "#2f7d32", "promotion": "#7b3294", "refused": "#7b3294"}
LEGEND = [
    ("done", "step"),
    ("failed", "failed"),
    ("interrupted", "interrupted"),
    ("undo", "undo"),
]

# Characters XML 1.0 cannot carry (and lone surrogates, which cannot be encoded at all).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("?", text)


def _esc(text: object, secrets: list[str]) -> str:
    """Untrusted text for an SVG text node or a double-quoted attribute."""
    text = _clean(mask(str(text), secrets))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _nice_step(span: float, ticks: int) -> float:
    raw = max(span, 1e-9) / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _number(value: float) -> str:
    return f"{round(value, 6):g}"


def _unit(value: float) -> tuple[int, str]:
    """The binary unit that shows `value` with at most four digits before the point."""
    scale, unit = 1, "B"
    for larger in ("KiB", "MiB", "GiB"):
        if abs(value) < 1024 * scale:
            break
        scale, unit = scale * 1024, larger
    return scale, unit


def _bytes(value: float) -> str:
    scale, unit = _unit(value)
    return f"{_number(round(value / scale, 1))} {unit}"


class _Canvas:
    def __init__(self, duration: float, secrets: Iterable[str]) -> None:
        self.duration = max(duration, 0.001)
        self.secrets = [s for s in secrets if s]
        self.parts: list[str] = []

    def x(self, at: float) -> float:
        return PLOT_LEFT + at / self.duration * (PLOT_RIGHT - PLOT_LEFT)

    def esc(self, text: object) -> str:
        return _esc(text, self.secrets)

    def add(self, text: str) -> None:
        self.parts.append(text)


def _f(value: float) -> str:
    return f"{value:.2f}"


def _draw(
    title: str,
    subtitle: str,
    duration: float,
    rows: list[Row],
    window: Window | None = None,
    markers: list[Marker] | None = None,
    lag: list[tuple[float, int, str]] | None = None,
    secrets: Iterable[str] = (),
    legend: list[tuple[str, str]] = LEGEND,
) -> str:
    """The one drawing: rows of spans on a time axis, an optional window over all rows, marker
    lines with their labels each on its own header line, an optional lag panel. Painted back to
    front: stripes, grid, window, bars, lag, markers."""
    markers = markers or []
    lag = lag or []
    canvas = _Canvas(duration, secrets)
    top = HEADER + MARK_LINE * len(markers)
    rows_bottom = top + ROW_HEIGHT * max(len(rows), 1)
    lag_top = rows_bottom + 10
    plot_bottom = lag_top + LAG_HEIGHT if lag else rows_bottom
    axis_y = plot_bottom + 4
    height = axis_y + 60
    add = canvas.add
    add(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="11">'
    )
    add(f"<title>{canvas.esc(title)}</title>")
    add(f'<rect class="background" x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>')
    add(f'<text class="title" x="10" y="18" font-size="13" font-weight="bold">{canvas.esc(title)}</text>')
    add(f'<text class="subtitle" x="10" y="34" fill="#555555">{canvas.esc(subtitle)}</text>')
    add(
        f'<rect class="plot" x="{PLOT_LEFT}" y="{top}" width="{PLOT_RIGHT - PLOT_LEFT}" '
        f'height="{plot_bottom - top}" fill="none" stroke="#cccccc" data-seconds="{_number(canvas.duration)}"/>'
    )
    for index in range(1, len(rows), 2):
        y = top + index * ROW_HEIGHT
        add(f'<rect class="stripe" x="0" y="{y}" width="{PLOT_RIGHT}" height="{ROW_HEIGHT}" fill="#f4f4f4"/>')
    _time_axis(canvas, top, plot_bottom, axis_y)
    if window is not None:
        _window_band(canvas, window, top, plot_bottom, "window")
    for index, row in enumerate(rows):
        _row(canvas, index, row, top + index * ROW_HEIGHT)
    if lag:
        _lag_panel(canvas, lag, lag_top)
    for index, marker in enumerate(markers):
        _marker(canvas, marker, HEADER + 8 + MARK_LINE * index, plot_bottom)
    _legend(canvas, height - 14, legend, window is not None or any(r.window for r in rows))
    add("</svg>")
    return "\n".join(canvas.parts) + "\n"


def _time_axis(canvas: _Canvas, top: int, bottom: int, axis_y: int) -> None:
    step = _nice_step(canvas.duration, 8)
    canvas.add('<g class="axis time-axis" stroke="#999999">')
    canvas.add(f'<line x1="{PLOT_LEFT}" y1="{axis_y}" x2="{PLOT_RIGHT}" y2="{axis_y}"/>')
    tick = 0.0
    while tick <= canvas.duration * 1.0000001:
        x = _f(canvas.x(tick))
        canvas.add(f'<line class="grid" x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="#eeeeee"/>')
        canvas.add(f'<line x1="{x}" y1="{axis_y}" x2="{x}" y2="{axis_y + 4}"/>')
        canvas.add(
            f'<text x="{x}" y="{axis_y + 15}" text-anchor="middle" stroke="none" fill="#333333">{_number(tick)}</text>'
        )
        tick += step
    canvas.add(
        f'<text x="{(PLOT_LEFT + PLOT_RIGHT) / 2:.0f}" y="{axis_y + 30}" text-anchor="middle" stroke="none" '
        'fill="#333333">seconds from the start</text>'
    )
    canvas.add("</g>")


def _window_band(canvas: _Canvas, window: Window, top: float, bottom: float, css: str, opacity: float = 0.18) -> None:
    end = window.end if window.end is not None else canvas.duration
    x, x_end = canvas.x(window.start), canvas.x(end)
    seconds = window.seconds()
    note = f"write unavailable {seconds:.3f} s" if seconds is not None else "write unavailable, not closed in this run"
    # The exact width; the stroke keeps a window of a few milliseconds visible.
    canvas.add(
        f'<rect class="{css} window-{window.how}" x="{_f(x)}" y="{_f(top)}" width="{_f(max(x_end - x, 0))}" '
        f'height="{_f(bottom - top)}" fill="#e45756" fill-opacity="{opacity}" stroke="#c0392b" stroke-width="1" '
        f'data-start="{_number(window.start)}" data-end="{_number(end)}"><title>{canvas.esc(note)}</title></rect>'
    )


def _row(canvas: _Canvas, index: int, row: Row, y: int) -> None:
    label = _short(row.label, LABEL_CHARS)
    add = canvas.add
    add(f'<g class="row row-{row.kind}" id="row-{index}" data-label="{canvas.esc(row.label)}">')
    colour = "#b35806" if row.kind == "undo" else "#222222"
    add(
        f'<text class="label" x="{LABEL_WIDTH}" y="{y + 13}" text-anchor="end" fill="{colour}">'
        f"{canvas.esc(label)}<title>{canvas.esc(row.label)}</title></text>"
    )
    for span in row.spans:
        end = span.end if span.end is not None else canvas.duration
        x = canvas.x(span.start)
        width = max(canvas.x(end) - x, 2.0)  # a step of a few milliseconds still shows
        x = min(x, PLOT_RIGHT - width)  # ... inside the plot
        dashed = ' stroke="#777777" stroke-dasharray="3,2"' if span.status == "interrupted" else ""
        seconds = f"{end - span.start:.3f} s"
        tip = f"{row.label}: {span.status}, {_number(round(span.start, 3))} s + {seconds}" + (
            f" ({span.note})" if span.note else ""
        )
        add(
            f'<rect class="bar bar-{span.status}" data-row="{canvas.esc(row.label)}" data-kind="{row.kind}" '
            f'x="{_f(x)}" y="{y + (ROW_HEIGHT - BAR_HEIGHT) / 2:.0f}" width="{_f(width)}" height="{BAR_HEIGHT}" '
            f'fill="{COLOURS.get(span.status, "#4c78a8")}"{dashed} data-start="{_number(round(span.start, 3))}" '
            f'data-end="{_number(round(end, 3))}"><title>{canvas.esc(tip)}</title></rect>'
        )
    if row.window is not None:  # over the row's bar (a fleet row): its service's own window
        _window_band(canvas, row.window, y + 1, y + ROW_HEIGHT - 1, "row-window", opacity=0.55)
    add("</g>")


def _lag_panel(canvas: _Canvas, lag: list[tuple[float, int, str]], top: int) -> None:
    """The gate samples' replay lag on an axis of its own, right of the plot, sharing the time
    axis: a line per gate (two gates' samples are not joined across the steps between them)."""
    highest = max(value for _, value, _ in lag)
    scale, unit = _unit(highest)
    step = _nice_step(highest / scale, 2) * scale if highest > 0 else 1.0  # round in the shown unit
    ceiling = step * max(math.ceil(highest / step), 1)
    bottom = top + LAG_HEIGHT

    def y(value: float) -> float:
        return bottom - value / ceiling * (LAG_HEIGHT - 6)

    add = canvas.add
    add('<g class="lag">')
    add(f'<text x="{LABEL_WIDTH}" y="{top + 13}" text-anchor="end" fill="#1b7837">replay lag (gate samples)</text>')
    add(f'<line x1="{PLOT_LEFT}" y1="{bottom}" x2="{PLOT_RIGHT}" y2="{bottom}" stroke="#cccccc"/>')
    add(f'<line class="lag-axis" x1="{PLOT_RIGHT}" y1="{top}" x2="{PLOT_RIGHT}" y2="{bottom}" stroke="#1b7837"/>')
    tick = 0.0
    while tick <= ceiling * 1.0000001:
        shown = f"{_number(round(tick / scale, 3))} {unit}"
        add(
            f'<text x="{PLOT_RIGHT + 5}" y="{y(tick) + 4:.1f}" fill="#1b7837">{shown}</text>'
            f'<line x1="{PLOT_RIGHT}" y1="{y(tick):.1f}" x2="{PLOT_RIGHT + 3}" y2="{y(tick):.1f}" stroke="#1b7837"/>'
        )
        tick += step
    runs: list[list[tuple[float, int]]] = []
    for index, (at, value, gate) in enumerate(lag):
        if index == 0 or gate != lag[index - 1][2]:
            runs.append([])
        runs[-1].append((at, value))
    for run in runs:
        points = " ".join(f"{canvas.x(at):.1f},{y(value):.1f}" for at, value in run)
        add(f'<polyline class="lag-line" points="{points}" fill="none" stroke="#1b7837" stroke-width="1.5"/>')
    for at, value, _ in lag if len(lag) <= MAX_LAG_DOTS else []:
        add(
            f'<circle cx="{canvas.x(at):.1f}" cy="{y(value):.1f}" r="2" fill="#1b7837">'
            f"<title>{_number(round(at, 2))} s: {_bytes(value)}</title></circle>"
        )
    add("</g>")


def _marker(canvas: _Canvas, marker: Marker, label_y: int, bottom: int) -> None:
    x = canvas.x(marker.at)
    colour = MARKER_COLOURS.get(marker.kind, "#666666")
    dash = "" if marker.kind in MARKER_COLOURS else ' stroke-dasharray="4,3"'
    # Left of the middle the label runs right from the line, else left: it stays inside the picture.
    anchor, dx = ("start", 3) if x < (PLOT_LEFT + PLOT_RIGHT) / 2 else ("end", -3)
    label = f"{marker.label} ({_number(round(marker.at, 2))} s)"
    canvas.add(
        f'<g class="marker marker-{marker.kind}" data-at="{_number(round(marker.at, 3))}">'
        f'<line x1="{_f(x)}" y1="{label_y - 9}" x2="{_f(x)}" y2="{bottom}" stroke="{colour}" stroke-width="1.2"{dash}/>'
        f'<text x="{_f(x + dx)}" y="{label_y}" text-anchor="{anchor}" fill="{colour}" '
        f'stroke="#ffffff" stroke-width="3" paint-order="stroke">{canvas.esc(label)}</text></g>'
    )


def _legend(canvas: _Canvas, y: int, legend: list[tuple[str, str]], with_window: bool) -> None:
    x = 10
    canvas.add('<g class="legend">')
    entries = [*legend, ("window", "write unavailable")] if with_window else legend
    for status, text in entries:
        fill = '#e45756" fill-opacity="0.3' if status == "window" else COLOURS[status]
        canvas.add(f'<rect x="{x}" y="{y - 9}" width="14" height="10" fill="{fill}"/>')
        canvas.add(f'<text x="{x + 18}" y="{y}">{text}</text>')
        x += 26 + 7 * len(text)
    canvas.add("</g>")


def timeline_svg(timeline: Timeline, secrets: Iterable[str] = ()) -> str:
    """The picture of one migration, as SVG text (masked and escaped)."""
    window = timeline.window
    seconds = window.seconds() if window else None
    parts = [f"0 s = {timeline.origin}" if timeline.origin else "no record of this migration in the journal"]
    if window is not None:
        how = " (the source read-only until the undo)" if window.how == "undone" else ""
        parts.append(
            f"write unavailable {seconds:.3f} s{how}" if seconds is not None else "write unavailable until the end"
        )
    return _draw(
        timeline.title,
        "; ".join(parts),
        timeline.duration,
        timeline.rows,
        window,
        timeline.markers,
        timeline.lag,
        secrets,
    )


# ---- the fleet: one row per service --------------------------------------------------------


@dataclass(frozen=True)
class ServiceRun:
    """One service's run in a fleet, in UTC ISO times as its journal has them."""

    service: str
    started: str
    finished: str | None  # None: still running or stopped without an end record
    outcome: str  # done | rolled-back | stopped-unsafe | running
    window_start: str | None = None
    window_end: str | None = None


def service_run(service: str, records: Iterable[dict[str, Any]], migration: str) -> ServiceRun:
    """A fleet row from one service's journal (its migration's records)."""
    mine = [r for r in records if isinstance(r, dict) and r.get("migration") == migration and _time(r.get("ts"))]
    finished = next((r for r in reversed(mine) if r.get("event") in ("migration-finished", "run-stopped")), None)
    timeline = timeline_from_records(mine, migration)
    start = _time(mine[0]["ts"]) if mine else None
    window_start = window_end = None
    if timeline.window is not None and start is not None:
        window_start = _iso(start + timeline.window.start)
        window_end = _iso(start + timeline.window.end) if timeline.window.end is not None else None
    return ServiceRun(
        service,
        mine[0]["ts"] if mine else "",
        finished["ts"] if finished else None,
        str(finished.get("outcome", "done")) if finished else "running",
        window_start,
        window_end,
    )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


FLEET_STATUS = {"done": "done", "rolled-back": "undo", "stopped-unsafe": "failed", "running": "interrupted"}
FLEET_LEGEND = [("done", "done"), ("undo", "rolled back"), ("failed", "stopped unsafe"), ("interrupted", "running")]


def fleet_gantt(rows: list[ServiceRun], title: str = "fleet", secrets: Iterable[str] = ()) -> str:
    """A Gantt of a fleet run: one row per service, its run as a bar (coloured by its outcome)
    and its own write-unavailability window shaded on it; seconds from the first service's start."""
    starts = [t for r in rows if (t := _time(r.started)) is not None]
    origin = min(starts) if starts else 0.0
    drawn: list[Row] = []
    last = 0.0
    for run in rows:
        start = _time(run.started)
        if start is None:
            continue
        end = _time(run.finished)
        w_start, w_end = _time(run.window_start), _time(run.window_end)
        window = Window(w_start - origin, None if w_end is None else w_end - origin, "promoted") if w_start else None
        status = FLEET_STATUS.get(run.outcome, "done")
        span = Span(start - origin, None if end is None else end - origin, status, run.outcome)
        drawn.append(Row(run.service, "service", [span], window))
        last = max([last, start - origin] + [t - origin for t in (end, w_end) if t is not None])
    subtitle = f"{len(drawn)} services; 0 s = {_iso(origin)}" if starts else "no service ran"
    return _draw(title, subtitle, max(last, 0.001), drawn, secrets=secrets, legend=FLEET_LEGEND)


# ---- beside the report ---------------------------------------------------------------------


def add_timeline(
    directory: Path, records: list[dict[str, Any]], migration: str, secrets: Iterable[str], text: str, markdown: str
) -> tuple[str, str, Path | None]:
    """Write `report-<migration>.svg` beside the Markdown report (owner-only, masked), embed it in
    the Markdown and put the text version under the terminal report. A picture that cannot be
    drawn or written costs a line, never the run's report or exit code."""
    secrets = [s for s in secrets if s]
    path = directory / f"report-{migration}.svg"
    try:
        timeline = timeline_from_records(records, migration)
        write_private(path, mask(timeline_svg(timeline, secrets), secrets))
        picture = timeline_text(timeline, secrets)
    except Exception as exc:  # noqa: BLE001 - a picture must never hide the run's outcome
        note = f"timeline not drawn: {type(exc).__name__}: {exc}"
        return f"{text}\n{note}", f"{markdown}\n{note}\n", None
    markdown = f"{markdown}\n## Timeline\n\n![timeline of migration {migration}]({path.name})\n"
    return f"{text}\n{picture}", markdown, path
