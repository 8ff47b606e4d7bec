"""The demo pipeline runs end to end (stations, then users), writes one page holding both evaluations, and
can be rerun into the same directory (resuming instead of retraining)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cellsynth.data import read
from cellsynth.data.synthetic import CityConfig
from cellsynth.demo import DemoResult, run_demo
from cellsynth.errors import ConfigError
from cellsynth.evaluate import METRICS
from cellsynth.generators.mstdiff import MSTDiffGenerator

CITY = CityConfig(n_stations=30, n_users=20, weeks=2, seed=1)
# The smoke configuration has 6 Gaussian steps: DDIM over 3 of them, as the demo's config says DDIM-20.
TINY_USERS = {"user_config": MSTDiffGenerator.smoke_config() | {"sampling": {"sampler": "ddim", "steps": 3}}}


def _checkpoints(directory):
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in directory.rglob("*.ckpt")}


def _run(out, messages):
    return run_demo(
        out,
        city_config=CITY,
        station_model="seasonal-mean",
        progress=False,
        echo=messages.append,
        **TINY_USERS,
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    messages: list[str] = []
    return out, _run(out, messages), messages


def test_demo_pipeline_end_to_end(first_run):
    out, first, messages = first_run
    assert [m[:5] for m in messages] == ["[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]"]
    assert not any("resuming" in m for m in messages)

    # Stations, as before.
    report = first.outputs["station report"]
    assert report.exists() and "<img" in report.read_text()
    metrics = json.loads((report.parent / "metrics.json").read_text())
    assert metrics["comparison"]["paired"] is True
    generated = read(first.outputs["generated traffic"])
    assert generated.n_stations == 6 * 4  # 20 % of 30 stations, 4 samples each

    # Users: 20 % of 20 held out, as many generated, over the city's stations, with traffic.
    users = read(first.outputs["generated users"])
    assert users.n_users == 4 and users.has_traffic and users.n_steps == 336
    assert (first.outputs["user model"] / "generator.json").exists()
    user_metrics = json.loads((first.outputs["user report"].parent / "metrics.json").read_text())
    assert user_metrics["kind"] == "user_mobility" and user_metrics["memorisation"] is not None

    # One page with both evaluations, listed first.
    assert next(iter(first.outputs)) == "report (all evaluations)"
    combined = first.outputs["report (all evaluations)"]
    assert combined == (out / "report.html").absolute()
    page = combined.read_text()
    assert "<script" not in page and "http" not in page
    assert "<h2 class='section'>Station traffic: planned sites</h2>" in page
    assert "<h2 class='section'>Users: trajectories and traffic</h2>" in page
    assert "href='#section-1'" in page and "href='#section-2'" in page
    for name in (*metrics["metrics"]["internet"], *user_metrics["metrics"]["trajectory"], "value_jsd"):
        assert f"<td>{METRICS[name].label}</td>" in page
    summary = first.summary()
    assert "station report" in summary and "user report" in summary and "No sign of copying" in summary
    assert "mstdiff: trained in" in summary and "distinct_loc" in summary
    assert summary.index("report (all evaluations)") < summary.index("station model")


def test_demo_rerun_resumes_instead_of_retraining(first_run):
    out, first, _ = first_run
    generated = read(first.outputs["generated traffic"])
    users = read(first.outputs["generated users"])
    checkpoints = _checkpoints(first.outputs["user model"])
    assert any(name.startswith("checkpoints/denoiser/") for name in checkpoints)
    messages: list[str] = []
    again = _run(out, messages)
    assert "resuming from the checkpoints" in messages[4]
    # Nothing was trained again (no checkpoint rewritten), and the outputs are the same.
    assert _checkpoints(again.outputs["user model"]) == checkpoints
    assert read(again.outputs["generated traffic"]).equals(generated)
    assert read(again.outputs["generated users"]).equals(users)


def test_demo_without_the_user_part(tmp_path):
    messages: list[str] = []
    result = run_demo(
        tmp_path,
        city_config=CITY,
        station_model="seasonal-mean",
        user_model=None,
        progress=False,
        echo=messages.append,
    )
    assert [m[:5] for m in messages] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert not (tmp_path / "users").exists()
    assert not any(name.startswith("user") for name in result.outputs)
    page = result.outputs["report (all evaluations)"].read_text()
    assert "Station traffic: planned sites" in page and "Users: trajectories" not in page


def test_demo_refuses_a_generator_of_the_wrong_kind_before_training(tmp_path):
    with pytest.raises(ConfigError, match="station generator"):
        run_demo(tmp_path, city_config=CITY, user_model="seasonal-mean", echo=lambda m: None)
    with pytest.raises(ConfigError, match="user generator"):
        run_demo(tmp_path, city_config=CITY, station_model="markov", echo=lambda m: None)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("option", "expected"), [([], "mstdiff"), (["--user-model", "none"], None)])
def test_cli_demo_passes_the_user_model_and_ends_with_the_report(monkeypatch, tmp_path, option, expected):
    from typer.testing import CliRunner

    import cellsynth.demo
    from cellsynth.cli import app

    seen = {}

    def fake_run_demo(out, **kwargs):
        seen.update(kwargs)
        stats = {"peak_trough_ratio": 2.0, "weekday_weekend_ratio": 1.2, "top10_share": 0.3, "acf_lag24": 0.8}
        report = Path(out) / "report.html"
        return DemoResult(
            out=Path(out),
            city=Path(out) / "city",
            statistics=stats,
            outputs={"report (all evaluations)": report},
        )

    monkeypatch.setattr(cellsynth.demo, "run_demo", fake_run_demo)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--no-progress", *option])
    assert result.exit_code == 0, result.output
    assert seen["user_model"] == expected
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("report with every evaluation:") and "report.html" in last


def test_the_pretrained_model_is_scored_beside_the_short_fit(tmp_path, monkeypatch):
    """On the default city with seed 0 the demo also scores the MSTDiff it ships; here a tiny fitted model
    stands in for it (the shipped one is checked below), and the city is built small."""
    import cellsynth.demo as demo
    from cellsynth.data.split import split_users
    from cellsynth.data.synthetic import synthesize_city

    small = CityConfig(n_stations=30, n_users=20, weeks=2, seed=0)
    train_users = split_users(synthesize_city(small).users, 0.2, seed=0)[0]
    stand_in = MSTDiffGenerator(TINY_USERS["user_config"]).fit(train_users, progress=False)
    monkeypatch.setattr(demo, "pretrained_user_model", lambda: stand_in)
    monkeypatch.setattr(demo, "CityConfig", lambda seed: small if seed == 0 else CityConfig(seed=seed))
    messages: list[str] = []
    result = run_demo(
        tmp_path / "d", city_config=small, station_model="seasonal-mean", progress=False,
        echo=messages.append, pretrained=True, **TINY_USERS,
    )  # fmt: skip
    assert [m[:5] for m in messages] == [f"[{i}/7]" for i in range(1, 8)]
    assert "pretrained MSTDiff" in messages[4]
    assert any(
        line.startswith("mstdiff, pretrained (recommended preset); held-out users")
        for line in result.headline
    )
    pretrained_users = read(tmp_path / "d" / "users" / "pretrained" / "generated")
    assert pretrained_users.n_users == 4
    page = result.outputs["report (all evaluations)"].read_text()
    assert "MSTDiff pretrained, recommended preset" in page


def test_pretrained_is_refused_where_it_was_not_trained(tmp_path):
    with pytest.raises(ConfigError, match="trained on the default city"):
        run_demo(tmp_path / "d", city_config=CITY, pretrained=True, progress=False, echo=lambda m: None)


@pytest.mark.skipif(
    not (demo_module := __import__("cellsynth.demo", fromlist=["x"]))
    .PRETRAINED_USER_MODEL.joinpath("generator.json")
    .is_file(),
    reason="the pretrained MSTDiff is not in this checkout (benchmarks/pretrain_demo.py trains it)",
)
def test_the_shipped_model_loads_as_the_recommended_preset_and_generates():
    from cellsynth.generators import get

    model = demo_module.pretrained_user_model()
    assert model.config.model_dump(exclude={"seed"}) == get(
        "mstdiff", preset="recommended"
    ).config.model_dump(exclude={"seed"})
    users = model.generate(3, seed=0)
    assert users.n_users == 3 and users.n_steps == 336 and users.has_traffic
    assert (users.traffic >= 0).all() and users.locations.max() < len(model.stations_)
