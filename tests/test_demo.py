"""The demo pipeline runs end to end and can be rerun into the same directory."""

from __future__ import annotations

import json

from cellsynth.data import read
from cellsynth.data.synthetic import CityConfig
from cellsynth.demo import run_demo


def test_demo_pipeline_end_to_end_and_rerun(tmp_path):
    config = CityConfig(n_stations=30, n_users=20, weeks=2, seed=1)
    messages: list[str] = []
    first = run_demo(
        tmp_path, city_config=config, station_model="seasonal-mean", progress=False, echo=messages.append
    )
    assert [m[:5] for m in messages] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    report = first.outputs["station report"]
    assert report.exists() and "<img" in report.read_text()
    metrics = json.loads((report.parent / "metrics.json").read_text())
    assert metrics["comparison"]["paired"] is True
    generated = read(first.outputs["generated traffic"])
    assert generated.n_stations == 6 * 4  # 20 % of 30 stations, 4 samples each
    assert "station report" in first.summary() and "No sign of copying" in first.summary()
    again = run_demo(
        tmp_path, city_config=config, station_model="seasonal-mean", progress=False, echo=lambda m: None
    )
    assert read(again.outputs["generated traffic"]).equals(generated)
