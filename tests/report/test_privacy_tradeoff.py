"""The privacy trade-off figure and page: fidelity, utility and membership AUC against epsilon."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from cellsynth.data.split import split_stations
from cellsynth.data.synthetic import synthesize_city
from cellsynth.errors import DataError
from cellsynth.evaluate import evaluate
from cellsynth.generators import get
from cellsynth.report import figures, write_privacy_report

from .test_report import IMAGE, _assert_self_contained

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def base():
    city = synthesize_city(n_stations=30, n_users=4, seed=3)
    train, held_out = split_stations(city.traffic, 0.2, seed=0)
    generated = get("seasonal-mean").fit(train, progress=False).generate(held_out.stations, samples=1, seed=0)
    return evaluate(held_out, generated, train=train, channels=["internet"])


def _at(base, value_jsd: float, auc: float | None):
    """``base`` with its value JSD and membership AUC replaced: a stand-in for a fit at some epsilon."""
    metrics = {group: dict(scores) for group, scores in base.metrics.items()}
    metrics["internet"]["value_jsd"] = {"value": value_jsd}
    memorisation = None if auc is None else {**base.memorisation, "membership_auc": auc}
    return dataclasses.replace(base, metrics=metrics, memorisation=memorisation)


def test_tradeoff_draws_each_metric_against_epsilon_with_inf_at_the_right_edge(base, tmp_path):
    # Given out of order: the figure sorts by epsilon.
    sweep = [(math.inf, _at(base, 0.1, 0.8)), (1.0, _at(base, 0.4, 0.5)), (8.0, _at(base, 0.2, None))]
    figure = figures.privacy_tradeoff(sweep, title="a sweep")
    axes = figure.get_axes()
    assert [ax.get_title() for ax in axes] == [label for _, label in figures.PRIVACY_PANELS]
    for ax in axes:
        assert ax.get_xlabel() == "epsilon (log scale)" and ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "8", "inf"]
    x, y = axes[0].get_lines()[0].get_data()
    np.testing.assert_allclose(x, [1.0, 8.0, 16.0])  # inf at 2 * the largest finite epsilon
    np.testing.assert_allclose(y, [0.4, 0.2, 0.1])
    auc = axes[3].get_lines()[0].get_ydata()
    assert auc[0] == 0.5 and np.isnan(auc[1]) and auc[2] == 0.8  # no attack at epsilon 8: a gap
    assert figure.get_suptitle() == "a sweep"
    path = tmp_path / "tradeoff.png"
    figure.savefig(path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_privacy_page_puts_the_tradeoff_first_then_each_fit_in_increasing_epsilon(base, tmp_path):
    sweep = [(math.inf, _at(base, 0.1, 0.8)), (2.0, _at(base, 0.3, 0.5))]
    path = write_privacy_report(sweep, tmp_path / "privacy.html", title="DP")
    page = path.read_text()
    _assert_self_contained(page)
    tradeoff = page.index("Privacy trade-off")
    assert tradeoff < page.index("<section id='section-1'>") < page.index("<section id='section-2'>")
    assert page.index("epsilon = 2</h2>") < page.index("without differential privacy</h2>")
    # One figure more than the two reports hold: the trade-off.
    assert len(IMAGE.findall(page)) == 1 + 2 * len(
        IMAGE.findall(page[page.index("<section id='section-2'>") :])
    )


@pytest.mark.parametrize(
    ("epsilons", "message"),
    [
        ([], "the privacy sweep is empty; give at least one"),
        ([4.0, 4.0], "epsilon 4 appears twice in the privacy sweep; give one evaluation per epsilon"),
        ([0.0], "epsilon 0.0 in the privacy sweep is not positive; use inf for no privacy"),
        ([math.nan], "epsilon nan in the privacy sweep is not positive"),
    ],
)
def test_bad_sweeps_are_refused_with_what_to_give(base, epsilons, message, tmp_path):
    sweep = [(epsilon, base) for epsilon in epsilons]
    with pytest.raises(DataError, match=message):
        figures.privacy_tradeoff(sweep)
    with pytest.raises(DataError, match=message):  # the page checks the same way, before writing anything
        write_privacy_report(sweep, tmp_path / "privacy.html")
    assert not (tmp_path / "privacy.html").exists()
