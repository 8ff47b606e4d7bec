"""One page holding several evaluations (what the demo writes): a table of contents, each report under its
own heading, still self-contained; the single-evaluation page is unchanged by the refactoring."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cellsynth.data.split import split_stations, split_users
from cellsynth.data.synthetic import synthesize_city
from cellsynth.errors import DataError
from cellsynth.evaluate import METRICS, evaluate
from cellsynth.generators import get
from cellsynth.report import html, render_combined_html, render_html, write_combined_report

from .test_report import IMAGE, _assert_self_contained


@pytest.fixture(scope="module")
def evaluations():
    """A station evaluation (seasonal-mean, one channel) and a user one (a perturbed copy of held-out users)."""
    city = synthesize_city(n_stations=40, n_users=40, seed=2)
    train, held_out = split_stations(city.traffic, 0.2, seed=0)
    generated = get("seasonal-mean").fit(train, progress=False).generate(held_out.stations, samples=2, seed=0)
    stations = evaluate(held_out, generated, train=train, channels=["internet"])
    train_users, held_users = split_users(city.users, 0.3, seed=0)
    rng = np.random.default_rng(0)
    locations = held_users.locations.copy()
    moved = rng.random(locations.shape) < 0.2
    locations[moved] = rng.integers(0, len(held_users.stations), int(moved.sum()))
    fake = type(held_users)(
        locations, held_users.start, held_users.step, held_users.stations, traffic=held_users.traffic
    )
    users = evaluate(held_users, fake, train=train_users)
    return stations, users


def test_combined_page_holds_both_reports_under_their_headings(evaluations):
    stations, users = evaluations
    page = render_combined_html([("Stations <A>", stations), ("Users", users)], title="Both")
    _assert_self_contained(page)
    assert page.count("<h1>") == 1 and "<h1>Both</h1>" in page
    # The table of contents links to both sections, in order, and comes before them.
    toc = re.search(r"<nav class='toc'>.*?</nav>", page).group(0)
    assert toc.index("href='#section-1'>Stations &lt;A&gt;</a>") < toc.index("href='#section-2'>Users</a>")
    first, second = page.index("<section id='section-1'>"), page.index("<section id='section-2'>")
    assert page.index(toc) < first < second
    assert "<h2 class='section'>Stations &lt;A&gt;</h2>" in page
    # Each report is complete (its figures, its metric table, its verdict) with its headings one level down.
    assert len(IMAGE.findall(page)) == len(IMAGE.findall(render_html(stations))) + len(
        IMAGE.findall(render_html(users))
    )
    for name in (*stations.metrics["internet"], *users.metrics["trajectory"], *users.metrics["traffic"]):
        assert f"<td>{METRICS[name].label}</td>" in page
    assert "<h2>" not in page and page.count("<h3>Metrics</h3>") == 2
    assert "<h3>Channel: internet</h3>" in page[first:second]
    assert "<h3>Trajectories</h3>" in page[second:] and "<h4>User traffic</h4>" in page[second:]
    assert page.count("No sign of copying") == 2


def test_single_report_is_the_page_it_always_was(evaluations):
    stations, users = evaluations
    for evaluation in (stations, users):
        title, body = html._report_parts(evaluation)
        page = render_html(evaluation)
        assert page == html._page(title, body)
        assert f"<h1>{title}</h1>" in page and "<nav" not in page and "<section" not in page
        assert "h2.section" not in page  # the combined page's extra CSS stays out of single reports
        # The combined page holds exactly the same body, one heading level down.
        combined = render_combined_html([("Only", evaluation)])
        assert html._demote("\n".join(part for part in body if part)) in combined


def test_write_combined_report_replaces_the_file_atomically(evaluations, tmp_path):
    stations, users = evaluations
    path = tmp_path / "sub" / "report.html"
    path.parent.mkdir()
    path.write_text("old page")
    assert write_combined_report([("Stations", stations), ("Users", users)], path) == path
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temporary file left
    with pytest.raises(ValueError, match="at least one"):
        write_combined_report([], path)
    assert "Users" in path.read_text()  # a failure keeps the earlier page


def test_combined_page_rejects_what_is_not_an_evaluation():
    with pytest.raises(DataError, match="section 'x'"):
        render_combined_html([("x", "not an evaluation")])
