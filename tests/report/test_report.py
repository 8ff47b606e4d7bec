"""cellsynth.report: a self-contained, readable HTML page and metrics.json, written atomically."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cellsynth.data import Stations, StationTraffic
from cellsynth.data.split import split_stations, split_users
from cellsynth.data.synthetic import synthesize_city
from cellsynth.errors import OutputError
from cellsynth.evaluate import METRICS, evaluate
from cellsynth.generators import get
from cellsynth.outputs import MARKER
from cellsynth.report import METRICS_FILE, REPORT_FILE, html, render_html, write_report

from ..test_evaluate import START, tiny_traffic, tiny_users

IMAGE = re.compile(r"<img src='data:image/png;base64,[A-Za-z0-9+/=]+'")


@pytest.fixture(scope="module")
def city():
    return synthesize_city(n_stations=60, n_users=60, seed=0)


@pytest.fixture(scope="module")
def station_report(city, tmp_path_factory):
    """Seasonal-mean on the held-out stations of the synthetic city, one channel (to keep the test quick)."""
    train, held_out = split_stations(city.traffic, 0.2, seed=0)
    generated = get("seasonal-mean").fit(train, progress=False).generate(held_out.stations, samples=5, seed=0)
    evaluation = evaluate(held_out, generated, train=train, channels=["internet"])
    out = tmp_path_factory.mktemp("station") / "eval"
    return evaluation, write_report(evaluation, out)


@pytest.fixture(scope="module")
def user_report(city, tmp_path_factory):
    """Held-out city users against a perturbed copy (a fifth of the steps moved to random stations)."""
    train, held_out = split_users(city.users, 0.3, seed=0)
    rng = np.random.default_rng(0)
    locations = held_out.locations.copy()
    moved = rng.random(locations.shape) < 0.2
    locations[moved] = rng.integers(0, len(held_out.stations), int(moved.sum()))
    generated = type(held_out)(
        locations, held_out.start, held_out.step, held_out.stations, traffic=held_out.traffic
    )
    evaluation = evaluate(held_out, generated, train=train)
    return evaluation, write_report(evaluation, tmp_path_factory.mktemp("users") / "eval")


def _assert_self_contained(page: str) -> None:
    assert "http" not in page  # no links, CDNs or remote images
    assert "<script" not in page
    assert not re.search(r"""src=['"](?!data:)""", page)


def test_station_report_holds_the_table_the_figures_and_the_verdict(station_report):
    evaluation, path = station_report
    page = path.read_text()
    _assert_self_contained(page)
    for name in evaluation.metrics["internet"]:
        assert f"<td>{METRICS[name].label}</td>" in page
    assert "lower is better" in page
    # Distributions, weekly profile, example weeks, per-station scatter, map, memorisation.
    assert len(IMAGE.findall(page)) == 6
    assert page.count("How to read:") == 6
    assert "No sign of copying" in page and "box ok" in page
    assert "12 stations × 5 samples each × 168 steps of 1 h" in page
    assert "cut into 2 consecutive periods of one week" in page
    assert "divided by its maximum over the training data" in page


def test_station_report_writes_metrics_json_beside_it(station_report):
    evaluation, path = station_report
    assert sorted(p.name for p in path.parent.iterdir()) == [MARKER, METRICS_FILE, REPORT_FILE]
    assert json.loads((path.parent / METRICS_FILE).read_text()) == evaluation.to_dict()


def test_user_report_shows_trajectories_traffic_and_memorisation(user_report):
    evaluation, path = user_report
    page = path.read_text()
    _assert_self_contained(page)
    for name in (
        "distance",
        "radius",
        "distinct_loc",
        "duration",
        "g_rank",
        "i_rank",
        "value_jsd",
        "diff_jsd",
    ):
        assert f"<td>{METRICS[name].label}</td>" in page
    # Memorisation, trajectory statistics, trajectory map, traffic histograms, weekly profile.
    assert len(IMAGE.findall(page)) == 5
    assert "<h2>Trajectories</h2>" in page and "<h2>User traffic</h2>" in page
    assert evaluation.memorisation is not None


def test_copy_train_is_flagged_in_the_memorisation_section(city):
    train, held_out = split_stations(city.traffic, 0.2, seed=0)
    copies = get("copy-train").fit(train, progress=False).generate(held_out.stations, samples=2, seed=0)
    evaluation = evaluate(held_out, copies, train=train, channels=["sms"])
    section = html._memorisation(evaluation, evaluation.aligned)
    assert "box alarm" in section and "Likely copying: 100%" in section
    assert "exact copies" not in section  # the count is drawn in the figure, not written
    assert len(IMAGE.findall(section)) == 1


@pytest.mark.realdata
def test_beijing_report_with_seasonal_mean_on_held_out_stations(shared_data, tmp_path):
    from cellsynth.data.loaders import load_stkdiff

    from ..conftest import shared_file

    beijing = load_stkdiff(shared_file(shared_data, "beijing-stkdiff/beijing.npz"))
    subset = beijing.select_stations(np.arange(0, beijing.n_stations, 8))  # 120 stations keep it quick
    train, held_out = split_stations(subset, 0.2, seed=0)
    generated = get("seasonal-mean").fit(train, progress=False).generate(held_out.stations, samples=3, seed=1)
    evaluation = evaluate(held_out, generated, train=train)
    assert evaluation.paired and evaluation.comparison["channels"] == ["traffic"]
    scores = evaluation.metrics["traffic"]
    assert all(entry["value"] is not None and np.isfinite(entry["value"]) for entry in scores.values())
    assert 0 <= scores["value_jsd"]["value"] <= 1 and scores["mae"]["original"] > 0
    assert not evaluation.memorisation["flagged"]
    page = write_report(evaluation, tmp_path / "eval").read_text()
    _assert_self_contained(page)
    assert "The stations have no coordinates, so there is no map of load." in page
    assert "24 stations × 3 samples each × 168 steps of 1 h × 1 channel (traffic); no coordinates" in page
    assert len(IMAGE.findall(page)) == 5  # no map


def test_unpaired_report_without_coordinates_escapes_names_and_skips_the_map():
    hostile = Stations(ids=[f"<b>bs{i}</b>" for i in range(6)], features=np.ones((6, 1)))
    real = StationTraffic(tiny_traffic(n=6, channels=("a&b",)).values, START, "1h", ("a&b",), hostile)
    generated = tiny_traffic(n=4, seed=2, channels=("a&b",), coordinates=False, prefix="<i>new")
    page = render_html(evaluate(real, generated))
    _assert_self_contained(page)
    assert "<b>bs" not in page and "&lt;b&gt;bs" not in page  # ids appear only inside figures
    assert "Channel: a&amp;b" in page
    assert "Not paired: 6 real vs 4 generated stations" in page
    assert "no map of load" in page
    assert "Not run: it needs the training data" in page
    # Distributions, weekly profile, example weeks; no scatter (unpaired), no map, no memorisation.
    assert len(IMAGE.findall(page)) == 3


def test_user_report_without_coordinates_or_traffic_says_what_is_missing():
    real = tiny_users(traffic=False, coordinates=False)
    page = render_html(evaluate(real, tiny_users(traffic=False, coordinates=False, seed=1)))
    _assert_self_contained(page)
    assert "trajectories cannot be drawn on a map" in page
    assert "Not compared: traffic is present on neither side." in page
    assert len(IMAGE.findall(page)) == 1  # the four coordinate-free trajectory statistics


def test_a_failure_while_rendering_leaves_no_partial_report(tmp_path, monkeypatch):
    evaluation = evaluate(tiny_traffic(n=3), tiny_traffic(n=3))
    out = tmp_path / "eval"

    def broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(html.figures, "weekly_profile", broken)  # the second figure: one is already drawn
    with pytest.raises(RuntimeError, match="figure failed"):
        write_report(evaluation, out)
    assert list(tmp_path.iterdir()) == []  # neither the directory nor a temporary sibling is left


def test_a_failure_while_rewriting_keeps_the_earlier_report(station_report, monkeypatch):
    evaluation, path = station_report
    before = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    monkeypatch.setattr(html.figures, "memorisation", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_report(evaluation, path.parent)
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == before
    assert sorted(p.name for p in path.parent.parent.iterdir()) == [path.parent.name]


def test_an_output_directory_holding_other_files_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    evaluation = evaluate(tiny_traffic(n=3), tiny_traffic(n=3))
    with pytest.raises(OutputError, match=r"not an evaluation .* \(it holds keep.txt\)"):
        write_report(evaluation, tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"
    with pytest.raises(OutputError, match="is a file, not a directory"):
        write_report(evaluation, tmp_path / "keep.txt")
