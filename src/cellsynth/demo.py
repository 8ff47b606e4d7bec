"""The main job on the built-in synthetic city, end to end (what ``make demo`` runs):

1. build the synthetic city (stations, hourly traffic, users, knowledge graph);
2. split the stations 80/20 (seeded) — the held-out ones play the planned sites;
3. fit the station generator (STOUTER by default, small enough for minutes on 2 CPU cores);
4. generate several plausible weeks for every held-out station;
5. evaluate them against the real held-out weeks (with the training stations for the memorisation check)
   and write a self-contained report.html.

Kept in the library, not the CLI, so that a notebook can run exactly what the command line runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellsynth.data.io import write
from cellsynth.data.split import split_stations
from cellsynth.data.summary import traffic_statistics
from cellsynth.data.synthetic import CityConfig, synthesize_city
from cellsynth.evaluate import evaluate, memorisation_verdict
from cellsynth.generators.registry import get

__all__ = ["DEMO_STATION_CONFIGS", "DemoResult", "run_demo"]

# Configurations that learn the city's weekly shape in a few minutes on 2 CPU cores: STOUTER with 150
# epochs at lr 1e-3 beat seasonal-mean on both JSDs of the default city (see BENCHMARKS.md).
DEMO_STATION_CONFIGS: dict[str, dict[str, Any]] = {
    "stouter": {"epochs": 150, "lr": 1e-3},
    "seasonal-mean": {},
}


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, and what it measured on the way."""

    out: Path
    city: Path
    statistics: dict
    outputs: dict[str, Path] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        stats = self.statistics
        lines = [
            f"demo finished in {self.seconds:.0f} s; outputs in {self.out}",
            f"  synthetic city: {self.city}",
            f"    internet: daily peak/trough {stats['peak_trough_ratio']:.1f}x, weekday/weekend "
            f"{stats['weekday_weekend_ratio']:.2f}, top 10 % of stations carry {stats['top10_share']:.0%} of load, "
            f"lag-24 autocorrelation {stats['acf_lag24']:.2f}",
            *(f"  {line}" for line in self.headline),
        ]
        lines += [f"  {name}: {path}" for name, path in self.outputs.items()]
        return "\n".join(lines)


def run_demo(
    out: str | Path = "demo-output",
    *,
    seed: int = 0,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    city_config: CityConfig | None = None,
    station_model: str = "stouter",
    station_config: dict[str, Any] | None = None,
    samples: int = 4,
) -> DemoResult:
    """Run the pipeline into ``out`` (``city/``, ``stations/model``, ``stations/generated``,
    ``stations/report``); a rerun resumes training from ``stations/model``'s checkpoints."""
    started = time.perf_counter()
    out = Path(out)
    city_config = city_config or CityConfig(seed=seed)
    echo(
        f"[1/4] building the synthetic city ({city_config.n_stations} stations, {city_config.n_users} users)"
    )
    city = synthesize_city(city_config)
    city_dir = city.write(out / "city")
    statistics = traffic_statistics(city.traffic, "internet")
    result = DemoResult(out=out, city=city_dir, statistics=statistics)

    train, held_out = split_stations(city.traffic, 0.2, seed=seed)
    config = {**DEMO_STATION_CONFIGS.get(station_model, {}), **(station_config or {}), "seed": seed}
    echo(
        f"[2/4] fitting {station_model} on {train.n_stations} stations x {train.n_steps // 168} weeks "
        f"(held out: {held_out.n_stations} stations)"
    )
    model_dir = out / "stations" / "model"
    fit_started = time.perf_counter()
    generator = get(station_model, config).fit(train, progress=progress, checkpoint_dir=model_dir)
    generator.save(model_dir)
    fit_seconds = time.perf_counter() - fit_started

    echo(
        f"[3/4] generating {samples} plausible weeks for each of the {held_out.n_stations} held-out stations"
    )
    synthetic = generator.generate(held_out.stations, samples=samples, seed=seed)
    generated_dir = write(synthetic, out / "stations" / "generated")

    echo("[4/4] evaluating against the real held-out weeks and writing the report")
    evaluation = evaluate(held_out, synthetic, train=train)
    report = evaluation.write(out / "stations" / "report")

    internet = evaluation.metrics.get("internet", {})
    scores = ", ".join(
        f"{name} {internet[name]['value']:.3f}"
        for name in ("value_jsd", "diff_jsd", "mae")
        if internet.get(name, {}).get("value") is not None
    )
    result.headline += [
        f"{station_model}: trained in {fit_seconds:.0f} s; held-out internet: {scores}",
        memorisation_verdict(evaluation.memorisation) if evaluation.memorisation else "",
    ]
    result.outputs.update(
        {
            "station model": model_dir,
            "generated traffic": generated_dir,
            "station report": report,
        }
    )
    result.seconds = time.perf_counter() - started
    return result
