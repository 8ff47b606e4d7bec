"""The benchmark pipeline: tiny end to end, the table's marks, resume from out/, refusal of mixed settings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cellsynth.benchmark import markdown_table, run_benchmark
from cellsynth.benchmark.table import _stouter_change
from cellsynth.data import Stations, StationTraffic
from cellsynth.errors import ConfigError
from cellsynth.generators import get_class

VAE = get_class("vae").smoke_config() | {"epochs": 1}


def tiny_city(n: int = 10, weeks: int = 2) -> StationTraffic:
    rng = np.random.default_rng(0)
    t = np.arange(168 * weeks)
    daily = 1.2 + np.cos(2 * np.pi * (t % 24 - 20) / 24)
    values = rng.lognormal(0, 0.3, (n, 1, 1)) * daily[None, :, None] * rng.lognormal(0, 0.2, (n, len(t), 1))
    stations = Stations(
        [f"s{i}" for i in range(n)], features=rng.normal(size=(n, 2)), feature_names=("a", "b")
    )
    return StationTraffic(values, pd.Timestamp("2026-01-05", tz="UTC"), "1h", ("traffic",), stations)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = run_benchmark(
        tiny_city(),
        ["seasonal-mean", "vae"],
        seeds=2,
        out=out,
        samples=3,
        configs={"vae": VAE},
        progress=False,
        echo=None,
    )
    return out, result


def test_end_to_end_writes_results_table_and_run_dirs(bench):
    out, result = bench
    assert sorted(p.name for p in (out / "results").iterdir()) == [
        "seasonal-mean__seed0.json",
        "seasonal-mean__seed1.json",
        "vae__seed0.json",
        "vae__seed1.json",
    ]
    assert (out / "runs" / "vae" / "seed1" / "generator.json").exists()
    assert (out / "runs" / "vae" / "seed1" / "checkpoints" / "vae" / "last.ckpt").exists()
    saved = json.loads((out / "results.json").read_text())
    assert saved["split"] == {
        "train_stations": 8,
        "train_stations_scored": 8,
        "held_out_stations": 2,
        "held_out_ids": saved["split"]["held_out_ids"],
        "train_span": ["2026-01-05T00:00:00+00:00", "2026-01-19T00:00:00+00:00"],
        "held_out_span": ["2026-01-05T00:00:00+00:00", "2026-01-19T00:00:00+00:00"],
    }
    assert saved["budget_rule"] == result.budget_rule and "preset" in result.budget_rule
    run = next(r for r in saved["runs"] if r["model"] == "vae" and r["seed"] == 1)
    assert run["config"]["seed"] == 1 and run["config"]["epochs"] == 1
    assert run["station_weeks_generated"] == (2 + 8) * 3
    assert run["station_weeks_per_second"] > 0 and run["train_seconds"] > 0
    for split in ("held_out", "train"):
        metrics = run["scores"][split]["metrics"]["traffic"]
        assert {
            "mae",
            "rmse",
            "value_jsd",
            "diff_jsd",
            "daily_periodic_rmse",
            "coverage",
            "band_coverage",
        } <= set(metrics)
        assert run["scores"][split]["memorisation"]["near_copy_share"] >= 0
    stats = result.summary["vae"]["held_out"]["traffic"]["mae"]
    maes = [
        r["scores"]["held_out"]["metrics"]["traffic"]["mae"]["value"]
        for r in result.runs
        if r["model"] == "vae"
    ]
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(np.mean(maes))
    assert stats["std"] == pytest.approx(np.std(maes, ddof=1))
    table = (out / "table.md").read_text()
    assert table == result.table
    assert "| Model | MAE | RMSE | JSD |" in table
    assert "held-out stations" in table and "training stations" in table and "Memorisation and cost" in table
    assert result.budget_rule in table


def test_rerun_reuses_every_result_without_training(bench):
    out, first = bench
    ckpt = out / "runs" / "vae" / "seed0" / "checkpoints" / "vae" / "last.ckpt"
    stamp = ckpt.stat().st_mtime_ns
    again = run_benchmark(
        tiny_city(),
        ["seasonal-mean", "vae"],
        seeds=2,
        out=out,
        samples=3,
        configs={"vae": VAE},
        progress=False,
        echo=None,
    )
    assert sorted(again.reused) == [("seasonal-mean", 0), ("seasonal-mean", 1), ("vae", 0), ("vae", 1)]
    assert again.table == first.table
    assert ckpt.stat().st_mtime_ns == stamp


def test_killed_bench_picks_up_where_it_stopped(bench, tmp_path):
    """A result lost (killed while scoring) is recomputed from the saved model, not trained again; a run
    killed during training resumes from its checkpoint."""
    out, first = bench
    (out / "results" / "vae__seed1.json").unlink()
    fit_record = (out / "runs" / "vae" / "seed1" / "fit.json").read_text()
    again = run_benchmark(
        tiny_city(),
        ["seasonal-mean", "vae"],
        seeds=2,
        out=out,
        samples=3,
        configs={"vae": VAE},
        progress=False,
        echo=None,
    )
    assert ("vae", 1) not in again.reused and len(again.reused) == 3
    assert (out / "runs" / "vae" / "seed1" / "fit.json").read_text() == fit_record  # not trained again
    redone = next(r for r in again.runs if r["model"] == "vae" and r["seed"] == 1)
    before = next(r for r in first.runs if r["model"] == "vae" and r["seed"] == 1)
    assert redone["scores"] == before["scores"]  # same saved model, same seed: same numbers


def test_other_settings_are_refused(bench):
    out, _ = bench
    with pytest.raises(ConfigError, match="different settings.*samples"):
        run_benchmark(tiny_city(), ["seasonal-mean"], seeds=1, out=out, samples=4, progress=False, echo=None)
    with pytest.raises(ConfigError, match="another vae config"):
        run_benchmark(
            tiny_city(),
            ["vae"],
            seeds=1,
            out=out,
            samples=3,
            configs={"vae": VAE | {"latent_dim": 3}},
            progress=False,
            echo=None,
        )


def test_argument_errors(tmp_path):
    data = tiny_city()
    with pytest.raises(ConfigError, match="no models"):
        run_benchmark(data, [], out=tmp_path)
    with pytest.raises(ConfigError, match="unknown generator"):
        run_benchmark(data, ["nope"], out=tmp_path)
    with pytest.raises(ConfigError, match="budget"):
        run_benchmark(data, ["seasonal-mean"], out=tmp_path, budget="1h")
    with pytest.raises(ConfigError, match="not benchmarked"):
        run_benchmark(data, ["seasonal-mean"], out=tmp_path, configs={"vae": {}})
    with pytest.raises(ConfigError, match="user mobility"):
        run_benchmark(data, ["markov"], out=tmp_path)
    with pytest.raises(ConfigError, match="train_stations"):
        run_benchmark(data, ["seasonal-mean"], out=tmp_path, train_stations=-1)


def test_models_start_from_the_preset_with_configs_on_top(tmp_path):
    """The paper preset's values (VAE: no clipping) reach the stored config; a config given for a model
    changes its fields, a section key by key (the preset's normalisation stays beside the new margin)."""
    result = run_benchmark(
        tiny_city(n=5, weeks=1),
        ["seasonal-mean", "vae"],
        seeds=1,
        out=tmp_path / "paper",
        samples=2,
        configs={"vae": VAE | {"epochs": 1, "extensions": {"normalisation": "unit"}}},
        preset="paper",
        progress=False,
        echo=None,
    )
    vae = next(r for r in result.runs if r["model"] == "vae")["config"]
    # paper: no clipping, no floor
    assert vae["extensions"] == {"normalisation": "unit", "clip_margin": None, "training_floor": False}
    assert vae["hidden"] == VAE["hidden"] and vae["epochs"] == 1


def test_an_unknown_preset_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"vae has no preset 'nope': choose one of paper, recommended"):
        run_benchmark(tiny_city(), ["seasonal-mean", "vae"], out=tmp_path / "b", preset="nope", echo=None)
    assert not (tmp_path / "b").exists()


def test_training_split_can_be_scored_on_a_seeded_subset(tmp_path):
    kw = {"seeds": 1, "samples": 2, "progress": False, "echo": None}
    result = run_benchmark(
        tiny_city(n=20, weeks=1), ["copy-train"], out=tmp_path / "a", train_stations=5, **kw
    )
    record = json.loads((tmp_path / "a" / "results.json").read_text())
    assert record["split"]["train_stations"] == 16 and record["split"]["train_stations_scored"] == 5
    assert "scored on 5 of them" in result.table
    # copy-train returns each training station's own (only) week: paired errors on the subset are zero
    train_mae = result.summary["copy-train"]["train"]["traffic"]["mae"]["mean"]
    assert train_mae == 0.0
    # the subset is part of the settings: another size is another benchmark
    with pytest.raises(ConfigError, match="train_stations_scored"):
        run_benchmark(tiny_city(n=20, weeks=1), ["copy-train"], out=tmp_path / "a", train_stations=6, **kw)


def test_epoch_budget_applies_to_every_trained_model(tmp_path):
    result = run_benchmark(
        tiny_city(n=5, weeks=1),
        ["seasonal-mean", "vae"],
        seeds=[3],
        out=tmp_path,
        samples=2,
        budget=2,
        configs={"vae": VAE},
        progress=False,
        echo=None,
    )
    vae = next(r for r in result.runs if r["model"] == "vae")
    assert vae["config"]["epochs"] == 2 and vae["seed"] == 3
    assert "same 2 epochs" in result.budget_rule


def test_min_steps_lengthens_training_on_a_small_training_set(tmp_path):
    """``min_steps``: epochs = max(budget, ceil(m / ceil(station-weeks / batch))), per model and protocol; a
    model without epochs (a floor) is untouched; the rule is stated and is part of the settings."""
    from cellsynth.benchmark.run import plan_benchmark

    data = tiny_city(n=10, weeks=2)
    batch = VAE["batch_size"]

    def epochs(min_steps, protocol="stations", budget=2, test_fraction=0.2):
        plan = plan_benchmark(
            data,
            ["seasonal-mean", "vae"],
            out=tmp_path / "unused",
            seeds=1,
            budget=budget,
            min_steps=min_steps,
            protocol=protocol,
            test_fraction=test_fraction,
            configs={"vae": VAE},
        )
        assert "epochs" not in plan.configs["seasonal-mean", 0]
        return plan.configs["vae", 0]["epochs"], plan.budget_rule

    # by station: 8 training stations x 2 weeks = 16 station-weeks
    batches = -(-16 // batch)
    assert epochs(None)[0] == 2
    assert epochs(2 * batches)[0] == 2  # the budget already makes that many steps
    more, rule = epochs(5 * batches + 1)
    assert more == 6 and f"at least {5 * batches + 1} optimiser steps" in rule
    # by time: the first of 2 weeks trains, 10 station-weeks
    assert epochs(7, protocol="time", test_fraction=0.5)[0] == -(-7 // -(-10 // batch))
    with pytest.raises(ConfigError, match="min_steps"):
        epochs(0)
    run = {"seeds": 1, "samples": 2, "progress": False, "echo": None}
    run_benchmark(data, ["seasonal-mean"], out=tmp_path / "b", **run)
    with pytest.raises(ConfigError, match="min_steps"):  # another rule is another benchmark
        run_benchmark(data, ["seasonal-mean"], out=tmp_path / "b", min_steps=10, **run)


def test_table_marks_best_bold_and_second_underlined():
    table = markdown_table(
        ["Model", "MAE", "Coverage"],
        [["a", "0.3", "0.5"], ["b", "0.1", "0.88"], ["c", "0.2", "0.99"], ["d", "–", "0.8"]],
        [[0.3, 0.5], [0.1, 0.88], [0.2, 0.99], [None, 0.8]],
        [None, 0.9],
    )
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in table.splitlines()[2:]}
    assert rows["b"][0] == "**0.1**" and rows["c"][0] == "<u>0.2</u>" and rows["a"][0] == "0.3"
    assert rows["d"][0] == "–"
    # Coverage is ranked by closeness to 0.9: 0.88 (off by 0.02) best, then 0.99 (0.09), then 0.8 (0.1).
    assert rows["b"][1].rstrip(" |") == "**0.88**"
    assert rows["c"][1].rstrip(" |") == "<u>0.99</u>"
    assert table.splitlines()[1] == "|---|---:|---:|"


def test_stouter_change_is_against_the_best_paper_baseline():
    models = ["seasonal-mean", "vae", "diffwave", "stouter"]
    columns = [("traffic", "mae", "MAE"), ("traffic", "value_jsd", "JSD")]
    means = [[0.01, 0.01], [0.2, 0.10], [0.1, 0.20], [0.05, 0.05]]
    row = _stouter_change(models, means, columns)
    # seasonal-mean is not one of STOUTER's baselines: the best paper baseline is diffwave (MAE), vae (JSD).
    assert row == "| STOUTER vs best of vae, diffwave | -50.0 % | -50.0 % |"
    assert _stouter_change(["vae", "diffwave"], means[1:3], columns) is None


def test_multi_channel_table_has_columns_per_channel(tmp_path):
    rng = np.random.default_rng(1)
    base = tiny_city(n=6, weeks=2)
    values = np.concatenate([base.values, base.values * rng.lognormal(0, 0.3, base.values.shape)], axis=2)
    data = StationTraffic(values, base.start, base.step, ("internet", "sms"), base.stations)
    result = run_benchmark(data, ["seasonal-mean", "copy-train"], seeds=1, out=tmp_path, samples=2, echo=None)
    header = next(line for line in result.table.splitlines() if line.startswith("| Model | internet"))
    assert header == "| Model | internet MAE | internet RMSE | internet JSD | sms MAE | sms RMSE | sms JSD |"
    assert "## Other metrics — held-out stations (new sites) — sms" in result.table
    # One seed: no spread to show.
    assert "±" not in header and " ± " not in result.table.split("## Table 1")[1].splitlines()[4]


def test_what_each_fit_reports_lands_in_the_results_and_the_table(tmp_path, monkeypatch):
    from cellsynth.generators.floors.stations import SeasonalMeanGenerator

    monkeypatch.setattr(
        SeasonalMeanGenerator,
        "fit_notes",
        lambda self: [f"fitted with seed {self.config.seed}"],
        raising=False,
    )
    result = run_benchmark(
        tiny_city(), ["seasonal-mean"], seeds=2, out=tmp_path / "b", samples=2, progress=False, echo=None
    )
    assert sorted(r["fit_notes"][0] for r in result.runs) == ["fitted with seed 0", "fitted with seed 1"]
    assert "## Fit notes" in result.table
    assert (
        "- seasonal-mean, seed 0: fitted with seed 0\n- seasonal-mean, seed 1: fitted with seed 1"
        in result.table
    )
    # a model that reports nothing adds no section
    quiet = run_benchmark(
        tiny_city(), ["nearest-station"], seeds=1, out=tmp_path / "q", progress=False, echo=None
    )
    assert "Fit notes" not in quiet.table
