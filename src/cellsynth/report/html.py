"""The evaluation report as one self-contained HTML page: inline CSS, figures as base64 PNG, no scripts and
no external references, so it can be mailed or archived as a single file.

Layout: title; what was compared (data shapes, the protocol in plain words, notes); the metric table with a
description and "which way is better" per metric; the memorisation check with its verdict; then figures,
per channel for station traffic (distributions, average week, example weeks, per-station load, map) or for
users (trajectory statistics, trajectories on the map, traffic). Every figure has a caption saying how to
read it and what good looks like. All text is escaped.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

import numpy as np

import cellsynth
from cellsynth.errors import DataError
from cellsynth.evaluate import Evaluation, StationComparison, UserComparison
from cellsynth.metrics.catalog import METRICS
from cellsynth.report import figures

__all__ = ["render_combined_html", "render_html", "render_privacy_html"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1a202c;
       margin: 0; background: #f7fafc; line-height: 1.45; }
main { max-width: 1060px; margin: 0 auto; padding: 24px 28px 48px; background: white; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 2px solid #e2e8f0; padding-bottom: 0.2em; }
h3 { font-size: 1.08em; margin-top: 1.6em; }
.subtitle { color: #4a5568; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 0.6em 0 1em; font-size: 0.93em; }
th, td { text-align: left; padding: 5px 9px; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
th { background: #edf2f7; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.desc { color: #4a5568; }
tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 1em 0 1.8em; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #2d3748; font-size: 0.92em; margin-top: 0.4em; max-width: 62em; }
.box { border-radius: 6px; padding: 10px 14px; margin: 0.8em 0; }
.ok { background: #f0fff4; border-left: 5px solid #38a169; }
.alarm { background: #fff5f5; border-left: 5px solid #e53e3e; }
.note { background: #fffaf0; border-left: 5px solid #dd6b20; }
.info { background: #ebf8ff; border-left: 5px solid #3182ce; }
.muted { color: #718096; }
ul { margin: 0.3em 0; padding-left: 1.3em; }
li { margin: 0.15em 0; }
"""

# Added for a page that holds several reports (render_combined_html); a single report keeps _CSS alone.
_COMBINED_CSS = """
h2.section { font-size: 1.5em; margin-top: 2.2em; border-bottom: 3px solid #2d3748; }
h4 { font-size: 1em; margin-top: 1.4em; }
nav.toc { background: #edf2f7; border-radius: 6px; padding: 10px 14px; margin: 0.8em 0 1.4em; }
nav.toc ol { margin: 0.3em 0 0; padding-left: 1.4em; }
nav.toc a { color: #2b6cb0; }
"""


def render_html(evaluation: Evaluation) -> str:
    """The whole report page for ``evaluation`` as a string."""
    title, body = _report_parts(evaluation)
    return _page(title, body)


def render_combined_html(
    sections: list[tuple[str, Evaluation]], *, title: str = "Generated vs real data"
) -> str:
    """One self-contained page holding several evaluations, each under its own heading: ``sections`` is
    ``[(heading, evaluation), ...]`` in page order (the demo's: stations, then users). A table of contents
    at the top links to each section; inside a section, the report of :func:`render_html` follows with its
    headings one level down."""
    return _combined_page(sections, title=title, lead=[])


def render_privacy_html(
    sweep: list[tuple[float, Evaluation]], *, title: str = "Generated vs real data under differential privacy"
) -> str:
    """One page for fits that differ by their privacy budget: ``sweep`` is ``[(epsilon, evaluation), ...]``
    (``inf``: without differential privacy). The trade-off figure (:func:`figures.privacy_tradeoff`) comes
    first, then each evaluation's report as in :func:`render_combined_html`, in increasing epsilon."""
    figure = figures.privacy_tradeoff(sweep)  # checks the sweep: not empty, one evaluation per epsilon
    tradeoff = "<h2>Privacy trade-off</h2>" + _figure(
        figure,
        "each point is one fit; x is its privacy budget epsilon (smaller is more private; inf, at the right "
        "edge, is the fit without differential privacy), y a metric averaged over channels, or the "
        "membership-inference attack's AUC.",
        "fidelity and utility close to the inf point at the smallest epsilon an operator accepts, and a "
        "membership AUC near 0.5 (the dashed line) at every finite epsilon.",
    )
    ordered = sorted(((float(e), ev) for e, ev in sweep), key=lambda point: point[0])
    sections = [(f"epsilon = {epsilon:g}" if epsilon != float("inf") else "without differential privacy",
                 evaluation) for epsilon, evaluation in ordered]  # fmt: skip
    return _combined_page(sections, title=title, lead=[tradeoff])


def _combined_page(sections: list[tuple[str, Evaluation]], *, title: str, lead: list[str]) -> str:
    """The combined page: table of contents, then ``lead`` (HTML starting at ``<h2>``), then the sections."""
    sections = list(sections)
    if not sections:
        raise DataError("render_combined_html needs at least one (heading, evaluation) section")
    entries, parts = [], []
    for i, (heading, evaluation) in enumerate(sections, start=1):
        if not isinstance(evaluation, Evaluation):
            raise DataError(f"section {heading!r}: expected an Evaluation, got {type(evaluation).__name__}")
        anchor = f"section-{i}"
        what, body = _report_parts(evaluation)
        entries.append(
            f"<li><a href='#{anchor}'>{escape(heading)}</a> <span class='muted'>({escape(what)})</span></li>"
        )
        parts.append(
            f"<section id='{anchor}'><h2 class='section'>{escape(heading)}</h2>"
            + _p(what, "subtitle")
            + _demote("\n".join(part for part in body if part))
            + "</section>"
        )
    toc = "<nav class='toc'><strong>Contents</strong><ol>" + "".join(entries) + "</ol></nav>"
    return _page(title, [toc, *lead, *parts], css=_CSS + _COMBINED_CSS)


def _report_parts(evaluation: Evaluation) -> tuple[str, list[str]]:
    """``(title, body parts)`` of the report on one evaluation: its sections start at ``<h2>``."""
    aligned = evaluation.aligned
    if isinstance(aligned, StationComparison):
        title = "Generated vs real station traffic"
        body = [
            _compared_stations(evaluation),
            _metric_tables(evaluation),
            _memorisation(evaluation, aligned),
        ]
        body += [_channel_section(evaluation, aligned, c) for c in range(len(aligned.channels))]
    elif isinstance(aligned, UserComparison):
        title = "Generated vs real users: trajectories and traffic"
        body = [_compared_users(evaluation), _metric_tables(evaluation), _memorisation(evaluation, aligned)]
        body += [_trajectory_section(aligned), _user_traffic_section(evaluation, aligned)]
    else:  # pragma: no cover - Evaluation is built by cellsynth.evaluate only
        raise TypeError(f"cannot report on {type(aligned).__name__}")
    return title, body


def _page(title: str, body: list[str], *, css: str = _CSS) -> str:
    """The page around ``body``: head with the inline CSS, ``title`` as ``<h1>``, the subtitle."""
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{escape(title)} — cellsynth evaluation</title>\n<style>{css}</style>\n</head>\n<body><main>\n"
        f"<h1>{escape(title)}</h1>\n"
        f"<p class='subtitle'>cellsynth {escape(cellsynth.__version__)} evaluation report. Metric definitions, "
        "bins and formulas: docs/metrics.md in the cellsynth repository.</p>\n"
        + "\n".join(part for part in body if part)
        + "\n</main></body>\n</html>\n"
    )


# Every tag below is written by this module and all text is escaped, so a literal "<h2>" can only be ours.
_HEADING = re.compile(r"<(/?)h([23])>")


def _demote(html: str) -> str:
    """``<h2>`` -> ``<h3>``, ``<h3>`` -> ``<h4>``: a report's headings inside a combined page's section."""
    return _HEADING.sub(lambda m: f"<{m.group(1)}h{int(m.group(2)) + 1}>", html)


# ------------------------------------------------------------------------------------------------------------
# Building blocks


def _p(text: str, cls: str | None = None) -> str:
    return f"<p{_cls(cls)}>{escape(text)}</p>"


def _cls(cls: str | None) -> str:
    return f" class='{cls}'" if cls else ""


def _list(items) -> str:
    return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def _box(kind: str, title: str, content_html: str) -> str:
    return f"<div class='box {kind}'><strong>{escape(title)}</strong> {content_html}</div>"


def _figure(figure, how_to_read: str, good: str) -> str:
    uri = figures.to_data_uri(figure)
    return (
        f"<figure><img src='{uri}' alt='{escape(how_to_read, quote=True)}'>"
        f"<figcaption><strong>How to read:</strong> {escape(how_to_read)} "
        f"<strong>What good looks like:</strong> {escape(good)}</figcaption></figure>"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    value = float(value)
    if not np.isfinite(value):
        return "∞" if value > 0 else "undefined"
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4g}"


def _dataset_row(role: str, info: dict[str, Any] | None, shape_words: str) -> str:
    if info is None:
        return f"<tr><td>{escape(role)}</td><td class='muted' colspan='3'>not given</td></tr>"
    source = info.get("source") or "(in memory)"
    return (
        f"<tr><td>{escape(role)}</td><td>{escape(shape_words)}</td><td>{escape(info['start'])}</td>"
        f"<td>{escape(str(source))}</td></tr>"
    )


def _dataset_table(rows: list[str]) -> str:
    return (
        "<table><tr><th>data</th><th>what it holds</th><th>starts</th><th>source</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _notes(evaluation: Evaluation) -> str:
    if not evaluation.notes:
        return ""
    return _box("note", "Notes.", _list(evaluation.notes))


def _value_label(evaluation: Evaluation, what: str = "traffic") -> str:
    norm = evaluation.comparison.get("normalisation") or {}
    reference = "training" if "training" in norm.get("by", "") else "real"
    return f"{what}, normalised to {reference} max"


# ------------------------------------------------------------------------------------------------------------
# Sections


def _compared_stations(evaluation: Evaluation) -> str:
    c = evaluation.comparison

    def words(info, role):
        if info is None:
            return ""
        channels = f"{_count(len(info['channels']), 'channel')} ({', '.join(info['channels'])})"
        samples = f" × {_count(info['samples_per_station'], 'sample')} each" if role == "generated" else ""
        text = (
            f"{_count(info['stations'], 'station')}{samples} × {_count(info['steps'], 'step')} of "
            f"{info['step']} × {channels}"
        )
        return text + ("; with coordinates" if info["coordinates"] else "; no coordinates")

    rows = [
        _dataset_row("real", c["real"], words(c["real"], "real")),
        _dataset_row("generated", c["synthetic"], words(c["synthetic"], "generated")),
        _dataset_row("training", c["train"], words(c["train"], "training")),
    ]
    pairing = (
        f"Paired by station id: {c['stations_compared']['real']} stations."
        if c["paired"]
        else f"Not paired: {c['stations_compared']['real']} real vs {c['stations_compared']['generated']} "
        "generated stations compared as distributions."
    )
    return (
        "<h2>What was compared</h2>"
        + _dataset_table(rows)
        + _box("info", pairing, "")
        + "<h3>Protocol</h3>"
        + _list(c["protocol"])
        + _notes(evaluation)
        + _privacy(evaluation)
    )


def _privacy(evaluation: Evaluation) -> str:
    """The generating model's differential-privacy guarantee (docs/privacy.md), when the evaluation has it."""
    spent = evaluation.privacy
    if not spent:
        return ""
    return _box(
        "info",
        f"Differential privacy: the generator was trained with ({_number(spent['epsilon'])}, "
        f"{_number(spent['delta'])})-DP, the unit one {spent['unit']}.",
        _p(
            f"DP-SGD with the {spent['accountant']} accountant: noise multiplier "
            f"{_number(spent['noise_multiplier'])}, clipping norm {_number(spent['max_grad_norm'])}, "
            f"sampling rate {_number(spent['sample_rate'])}, {spent['steps']} steps. What the guarantee covers "
            "and what it does not: docs/privacy.md."
        ),
    )


def _compared_users(evaluation: Evaluation) -> str:
    c = evaluation.comparison

    def words(info):
        if info is None:
            return ""
        return (
            f"{_count(info['users'], 'user')} × {_count(info['steps'], 'step')} of {info['step']}, "
            + ("with traffic" if info["traffic"] else "trajectories only (no traffic)")
            + f", over {_count(info['stations'], 'station')}"
            + (" with coordinates" if info["coordinates"] else " without coordinates")
        )

    rows = [
        _dataset_row("real", c["real"], words(c["real"])),
        _dataset_row("generated", c["synthetic"], words(c["synthetic"])),
        _dataset_row("training", c["train"], words(c["train"])),
    ]
    return (
        "<h2>What was compared</h2>"
        + _dataset_table(rows)
        + "<h3>Protocol</h3>"
        + _list(c["protocol"])
        + _notes(evaluation)
    )


_GROUP_TITLES = {"trajectory": "Trajectories", "traffic": "User traffic"}


def _metric_tables(evaluation: Evaluation) -> str:
    parts = [
        "<h2>Metrics</h2>",
        _p(
            "Scores are on the normalised scale (each channel divided by its maximum in the reference data); "
            "metrics with units are also given in the data's original units. Every other metric is scale-free: "
            "the same in any units (—)."
            if evaluation.kind == "station_traffic"
            else "Every trajectory metric is a Jensen-Shannon divergence (base 2) between the real and the "
            "generated distribution of one statistic: 0 = identical, 1 = no overlap."
        ),
    ]
    for group, entries in evaluation.metrics.items():
        title = (
            _GROUP_TITLES.get(group, f"Channel: {group}")
            if evaluation.kind == "user_mobility"
            else (f"Channel: {group}")
        )
        rows = []
        for name, entry in entries.items():
            info = METRICS[name]
            value = entry["value"]
            shown = _number(value) if value is not None else "not computed"
            original = _number(entry.get("original")) if "original" in entry else "—"
            reason = f" ({entry['reason']})" if entry.get("reason") else ""
            rows.append(
                f"<tr><td>{escape(info.label)}</td><td class='desc'>{escape(info.description + reason)}</td>"
                f"<td class='num'>{escape(shown)}</td><td class='num'>{escape(original)}</td>"
                f"<td class='desc'>{escape(info.better)}</td></tr>"
            )
        parts.append(
            f"<h3>{escape(title)}</h3><table><tr><th>metric</th><th>what it measures</th>"
            "<th>score</th><th>in original units</th><th>which way is better</th></tr>"
            + "".join(rows)
            + "</table>"
        )
    return "".join(parts)


def _memorisation(evaluation: Evaluation, aligned) -> str:
    summary = evaluation.memorisation
    head = "<h2>Memorisation check</h2>"
    if summary is None:
        return head + _p(
            "Not run: it needs the training data (and real data the generator was not trained on). "
            "Pass the training data to see whether the generator copies it.",
            "muted",
        )
    verdict = _box("alarm" if summary["flagged"] else "ok", "Verdict:", escape(summary["verdict"]))
    numbers = [
        ("series compared", summary["series"]),
        (
            "training series / held-out real series / generated series",
            f"{summary['train_series']} / {summary['held_out_series']} / {summary['generated_series']}",
        ),
        ("held-out series are", summary["held_out_series_are"]),
        ("share of generated series that are near-copies", f"{summary['near_copy_share']:.1%}"),
        (
            "median distance: to training / to held-out",
            f"{_number(summary['median_distance_to_train'])} / {_number(summary['median_distance_to_held_out'])} "
            f"(ratio {_number(summary['dcr_ratio'])}; near 0 means copying)",
        ),
        (
            "membership-inference AUC",
            f"{_number(summary['membership_auc'])} (0.5 = the generated data reveals nothing about which series "
            "were in training)",
        ),
    ]
    table = (
        "<table>"
        + "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in numbers)
        + "</table>"
    )
    distance_label = (
        "distance between two user-weeks (Euclidean over the positions at every step, km)"
        if isinstance(aligned, UserComparison) and "km" in summary["series"]
        else "distance between two series (Euclidean, normalised scale)"
    )
    figure = _figure(
        figures.memorisation(aligned.memorisation, distance_label=distance_label),
        "Each generated series is matched with its closest training series (orange, filled) and its closest "
        "held-out real series (blue line). The grey line is the yardstick: how close real series the generator "
        "never saw come to the training set. Left of the red line are near-copies.",
        "the orange histogram sits where the grey one does, with little mass left of the red line. A copier "
        "piles up at 0, far left of the grey histogram.",
    )
    return head + verdict + figure + table


def _channel_section(evaluation: Evaluation, aligned: StationComparison, c: int) -> str:
    channel = aligned.channels[c]
    value_label = _value_label(evaluation, channel if "traffic" in channel else f"{channel} traffic")
    step_hours = aligned.step.total_seconds() / 3600
    step_word = "hour" if step_hours == 1 else "step"
    real = aligned.real_channel(c)  # [n, w, t]: one channel normalised, as the metrics scored it
    generated = aligned.generated_channel(c)
    real_series = real.reshape(-1, real.shape[-1])
    generated_series = generated.reshape(-1, real.shape[-1])
    parts = [f"<h2>Channel: {escape(channel)}</h2>"]
    parts.append(
        _figure(
            figures.distributions(
                real_series, generated_series, value_label=value_label, step_word=step_word
            ),
            f"Left: how often each traffic level occurs, over all stations and {step_word}s; right: how often "
            f"each change from one {step_word} to the next occurs. The y axis is logarithmic so that the rare "
            "busy hours and big jumps stay visible.",
            "the orange outline follows the blue area, including its tail to the right; a generated tail that "
            "stops early misses the peaks, one that runs past the real maximum invents them.",
        )
    )
    parts.append(
        _figure(
            figures.weekly_profile(
                real_series,
                generated_series,
                step_hours=step_hours,
                start=aligned.start,
                value_label=value_label,
            ),
            "At each hour of the week, the thick line is the median station; the band (real shaded, generated "
            "thin lines) spans the middle 80 % of stations, 10th to 90th percentile.",
            "orange and blue lines rise and fall together (same daily and weekly rhythm) and the bands have the "
            "same width (same spread between quiet and busy stations).",
        )
    )
    ids_real = [str(i) for i in aligned.real_stations.ids]
    ids_generated = [str(i) for i in aligned.generated_stations.ids]
    parts.append(
        _figure(
            figures.example_series(
                real,
                generated,
                real_ids=ids_real,
                generated_ids=ids_generated,
                paired=aligned.paired,
                step_hours=step_hours,
                start=aligned.start,
                value_label=value_label,
            ),
            (
                "Three stations (quiet, typical and busy by real mean load): the real week (blue), one generated "
                "sample (orange line) and the range of the station's generated samples (orange band)."
                if aligned.paired
                else "Three real stations (left: quiet, typical, busy) beside the generated stations of the same "
                "load rank (right). Samples of a generated station: one drawn as a line, their range shaded."
            ),
            (
                "the blue line runs mostly inside the orange band, and the orange sample looks like a real week: "
                "same rhythm, same level, similar noise."
                if aligned.paired
                else "left and right panels are hard to tell apart."
            ),
        )
    )
    if aligned.paired:
        parts.append(
            _figure(
                figures.mean_load_scatter(
                    real.mean(axis=(1, 2)),
                    generated.mean(axis=(1, 2)),
                    value_label=value_label,
                ),
                "One dot per station: its average real load (x) against its average generated load (y), on the "
                "same scale. Dots above the dashed line are over-estimated, below it under-estimated.",
                "dots close to the dashed y = x line, quiet and busy stations alike.",
            )
        )
    if aligned.real_stations.has_coordinates:
        generated_stations = (
            aligned.generated_stations if aligned.generated_stations.has_coordinates else None
        )
        parts.append(
            _figure(
                figures.station_map(
                    aligned.real_stations,
                    real.mean(axis=(1, 2)),
                    generated_stations,
                    generated.mean(axis=(1, 2)) if generated_stations is not None else None,
                    value_label=value_label,
                ),
                "Each dot is a station at its position (km from the centre of the real stations), coloured by "
                "its average load; both maps share one colour scale.",
                "busy (yellow) and quiet (dark) areas in the same places on both maps.",
            )
        )
    else:
        parts.append(_p("The stations have no coordinates, so there is no map of load.", "muted"))
    return "".join(parts)


def _trajectory_section(aligned: UserComparison) -> str:
    step_hours = aligned.step.total_seconds() / 3600
    parts = ["<h2>Trajectories</h2>"]
    parts.append(
        _figure(
            figures.trajectory_distributions(
                aligned.real_locations, aligned.generated_locations, aligned.stations, step_hours=step_hours
            ),
            "The statistics behind the trajectory metrics, real (blue) vs generated (orange): "
            + (
                "how far users jump and how far they range (km, log scale), "
                if aligned.stations.has_coordinates
                else ""
            )
            + "how many stations each user visits, how long they stay, how visits concentrate on the busiest "
            "stations, and how a user's time splits between their favourite stations.",
            "orange and blue match in every panel; each panel's mismatch is what the JSD of the same name in "
            "the table measures.",
        )
    )
    if aligned.stations.has_coordinates:
        parts.append(
            _figure(
                figures.trajectories_map(
                    aligned.real_locations, aligned.generated_locations, aligned.stations
                ),
                "A few randomly chosen users who move, each in its own colour, drawn station to station over the "
                "network (grey dots); the square marks where the user starts.",
                "generated users move like real ones: a few anchor stations (home, work), trips of similar "
                "length, no random jumps across the city.",
            )
        )
    else:
        parts.append(
            _p("The stations have no coordinates, so trajectories cannot be drawn on a map.", "muted")
        )
    return "".join(parts)


def _user_traffic_section(evaluation: Evaluation, aligned: UserComparison) -> str:
    if aligned.real_traffic is None or aligned.generated_traffic is None:
        return "<h2>User traffic</h2>" + _p(
            "Not compared: traffic is present on "
            + ("neither side." if "traffic" not in evaluation.metrics else "one side only."),
            "muted",
        )
    step_hours = aligned.step.total_seconds() / 3600
    value_label = _value_label(evaluation, "user traffic")
    parts = ["<h2>User traffic</h2>"]
    parts.append(
        _figure(
            figures.distributions(
                aligned.real_traffic, aligned.generated_traffic, value_label=value_label, step_word="step"
            ),
            "Left: how often each traffic volume occurs per user and step; right: how often each change from "
            "one step to the next occurs (log y axis).",
            "the orange outline follows the blue area, tail included.",
        )
    )
    if aligned.real_traffic.shape[1] % (7 * aligned.steps_per_day) == 0:
        parts.append(
            _figure(
                figures.weekly_profile(
                    aligned.real_traffic,
                    aligned.generated_traffic,
                    step_hours=step_hours,
                    start=aligned.start,
                    value_label=value_label,
                    centre="mean",
                ),
                "At each step of the week, the mean traffic per user (thick line) and the range of the middle "
                "80 % of users (real shaded, generated thin lines). Most users are silent most of the time, so "
                "the lower edge sits at 0.",
                "orange and blue follow the same daily rhythm.",
            )
        )
    return "".join(parts)
