"""benchmarks/speed.py on tiny sizes: the structure of its results and its time-boxing, never timings."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import benchmark_script


@pytest.fixture(scope="module")
def speed():
    return benchmark_script("speed")


def test_quick_run_measures_every_item_with_positive_rates(speed, monkeypatch, tmp_path):
    monkeypatch.setattr(
        speed, "QUICK", speed.QUICK | {"stations": (4, 10), "train_stations": 6, "big_stations": 12}
    )
    monkeypatch.setattr(speed, "QUICK", speed.QUICK | {"users": (1, 2)})
    results = speed.run(
        quick=True, max_seconds=600, models=("seasonal-mean", "vae"), pretrained=False, log=lambda m: None
    )
    assert results["device"] == "cpu" and results["quick"] is True
    assert results["gemm_flops"]["float32"] > 0 and results["gemm_flops"]["float64"] > 0
    rows = results["rows"]
    assert [(r["model"], r["size"]) for r in rows] == [
        ("seasonal-mean", 4),
        ("seasonal-mean", 10),
        ("vae", 4),
        ("vae", 10),
        ("mstdiff", 1),
        ("mstdiff", 2),
    ]
    for row in rows:
        assert row["seconds"] >= 0 and row["per_second"] > 0 and row["gemm_gflop_per_unit"] > 0
        assert row["peak_rss_mb"] > 0 and row["unit"] in ("station-weeks", "users")
    table = speed.markdown(results)
    assert table.count("\n| ") == 2 + len(rows)  # header, rule, one line per row
    json.dumps(results)  # what results.json holds
    # --no-big-stations leaves the untrained 4,000-station model out: nothing of the users' part is left
    results = speed.run(quick=True, models=(), pretrained=False, big_stations=False, log=lambda m: None)
    assert results["rows"] == []


def test_a_size_estimated_past_the_limit_is_skipped_with_a_note(speed):
    calls = []

    def slow(size):
        calls.append(size)
        total = 0.0
        for _ in range(20_000 * size):
            total += 1.0

    rows = speed.ladder((1, 1_000_000, 2_000_000), slow, torch.device("cpu"), max_seconds=5.0)
    assert calls == [1]
    assert rows[0]["per_second"] > 0
    assert [r["size"] for r in rows[1:]] == [1_000_000, 2_000_000]
    assert all("skipped" in r and "from 1 in" in r["skipped"] for r in rows[1:])


def test_cuda_without_a_device_is_refused(speed, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as raised:
        speed.main(["--device", "cuda", "--quick", "--out", "unused"])
    assert raised.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_streaming_rows_run_generate_and_evaluate_in_children_with_their_own_peaks(speed):
    ballast = bytearray(1536 * 2**20)  # this process's peak above the children's: it must not show in them
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    rows = speed.streaming_rows({"stations": (4, 12)}, log=lambda m: None)
    del ballast
    assert [r["model"].split(" ")[0] for r in rows] == ["generate", "evaluate"]
    for row in rows:
        assert row["size"] == 48 and row["seconds"] > 0 and row["per_second"] > 0
        assert 50 < row["peak_rss_mb"] < 1536  # a child's own peak: Python, torch and the data


def test_workers_add_rows_through_the_local_engine(speed, monkeypatch):
    monkeypatch.setattr(speed, "QUICK", speed.QUICK | {"stations": (4, 10), "train_stations": 6})
    calls = []
    real = speed.in_chunks

    def recorded(model, kind, target, workers, options):
        calls.append((kind, len(target), workers))
        real(model, kind, target, workers, options)

    monkeypatch.setattr(speed, "in_chunks", recorded)
    results = speed.run(quick=True, max_seconds=600, models=("seasonal-mean",), users=False, workers=(2,))
    assert [(r["sampler"], r["size"]) for r in results["rows"]] == [
        ("-", 4),
        ("-", 10),
        ("-, 2 workers (chunks)", 4),
        ("-, 2 workers (chunks)", 10),
    ]
    assert calls == [("stations", 4, 2), ("stations", 10, 2)]
    assert all(r["per_second"] > 0 for r in results["rows"])
