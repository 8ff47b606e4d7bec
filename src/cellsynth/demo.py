"""The main job on the built-in synthetic city, end to end (what ``make demo`` runs).

Kept in the library, not the CLI, so that a notebook can run exactly what the command line runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cellsynth.data.summary import traffic_statistics
from cellsynth.data.synthetic import CityConfig, synthesize_city

__all__ = ["DemoResult", "run_demo"]


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, and what it measured on the way."""

    out: Path
    city: Path
    statistics: dict
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        stats = self.statistics
        lines = [
            f"demo finished in {self.seconds:.0f} s; outputs in {self.out}",
            f"  synthetic city: {self.city}",
            f"    internet: daily peak/trough {stats['peak_trough_ratio']:.1f}x, weekday/weekend "
            f"{stats['weekday_weekend_ratio']:.2f}, top 10 % of stations carry {stats['top10_share']:.0%} of load, "
            f"lag-24 autocorrelation {stats['acf_lag24']:.2f}",
        ]
        lines += [f"  {name}: {path}" for name, path in self.outputs.items()]
        return "\n".join(lines)


def run_demo(
    out: str | Path = "demo-output",
    *,
    seed: int = 0,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    config: CityConfig | None = None,
) -> DemoResult:
    """Build the synthetic city into ``out/city`` and summarise it."""
    started = time.perf_counter()
    out = Path(out)
    config = config or CityConfig(seed=seed)
    echo(f"building the synthetic city ({config.n_stations} stations, {config.n_users} users, seed {seed})")
    city = synthesize_city(config)
    city_dir = city.write(out / "city")
    statistics = traffic_statistics(city.traffic, "internet")
    return DemoResult(out=out, city=city_dir, statistics=statistics, seconds=time.perf_counter() - started)
