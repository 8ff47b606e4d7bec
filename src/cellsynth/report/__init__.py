"""The evaluation report: ``metrics.json`` and a self-contained ``report.html`` for an
:class:`~cellsynth.evaluate.Evaluation`.

    from cellsynth.evaluate import evaluate
    from cellsynth.report import write_report

    write_report(evaluate(real, generated, train=train), "eval/")   # eval/metrics.json, eval/report.html
    write_combined_report([("Stations", station_eval), ("Users", user_eval)], "report.html")  # one page
    write_privacy_report([(1.0, eval_eps1), (8.0, eval_eps8), (inf, eval_plain)], "privacy.html")

Figures are drawn with matplotlib's Agg renderer (:mod:`cellsynth.report.figures`) and embedded in the page
as base64 PNG (:mod:`cellsynth.report.html`): the page needs no other file, script or network access.
"""

from __future__ import annotations

import os
from pathlib import Path

from cellsynth.data.io import write_text_atomic
from cellsynth.errors import DataError
from cellsynth.evaluate import Evaluation
from cellsynth.outputs import EVALUATION, atomic_directory
from cellsynth.report.html import render_combined_html, render_html, render_privacy_html

__all__ = [
    "METRICS_FILE",
    "REPORT_FILE",
    "render_combined_html",
    "render_html",
    "render_privacy_html",
    "write_combined_report",
    "write_privacy_report",
    "write_report",
]

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"


def write_report(evaluation: Evaluation, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/metrics.json`` and ``out_dir/report.html``; returns the report's path.

    The directory is written as a whole (:func:`~cellsynth.outputs.atomic_directory`): both files are
    rendered into a temporary sibling directory that then replaces ``out_dir``, so a failure (while drawing
    a figure, say) leaves no partial report and keeps an earlier one as it was. Because ``out_dir`` is
    replaced, it must be new, empty, or an earlier evaluation: other files are never deleted
    (:mod:`cellsynth.outputs`; :class:`~cellsynth.errors.OutputError` otherwise).
    """
    out_dir = Path(out_dir).absolute()
    with atomic_directory(out_dir, EVALUATION) as staging:
        (staging / METRICS_FILE).write_text(evaluation.to_json_text(), encoding="utf-8")
        (staging / REPORT_FILE).write_text(render_html(evaluation), encoding="utf-8")
    return out_dir / REPORT_FILE


def write_combined_report(
    sections: list[tuple[str, Evaluation]],
    path: str | os.PathLike,
    *,
    title: str = "Generated vs real data",
) -> Path:
    """Write one self-contained page holding several evaluations (:func:`render_combined_html`) to the file
    ``path``; returns its path. The page is rendered first, then written atomically
    (:func:`~cellsynth.data.io.write_text_atomic`), so a failure leaves no partial page and keeps an earlier one."""
    path = Path(path).absolute()
    if path.is_dir():
        raise DataError(f"{path} is a directory; give the path of the HTML file to write")
    write_text_atomic(path, render_combined_html(sections, title=title))
    return path


def write_privacy_report(
    sweep: list[tuple[float, Evaluation]],
    path: str | os.PathLike,
    *,
    title: str = "Generated vs real data under differential privacy",
) -> Path:
    """Write one self-contained page for fits at several privacy budgets (:func:`render_privacy_html`: the
    trade-off figure against epsilon, then each evaluation) to the file ``path``, atomically; returns its
    path. ``sweep`` is ``[(epsilon, evaluation), ...]``, ``inf`` for the fit without differential privacy."""
    path = Path(path).absolute()
    if path.is_dir():
        raise DataError(f"{path} is a directory; give the path of the HTML file to write")
    write_text_atomic(path, render_privacy_html(sweep, title=title))
    return path
