"""Compare the statistics of the synthetic city with the real data in ../shared/data.

Prints the markdown table of docs/synthetic-city.md:

    python benchmarks/synthetic_city_stats.py              # default city and the Milan-scale city
    python benchmarks/synthetic_city_stats.py --quick      # default city only
    python benchmarks/synthetic_city_stats.py --json out.json
    python benchmarks/synthetic_city_stats.py --timing     # build times and peak memory (no real data needed)

Real data (read-only, never copied): Beijing (960 stations x 168 hours, one week; its first weekday is
undocumented and is inferred here from the shape of its days), Milan per-cell internet totals over two
months with the Milan grid (spatial distribution of load), GeoLife location-id trajectories (48 half-hour
slots per day) for the mobility statistics.

Ranges (the acceptance criterion: a synthetic value passes when it lies inside):
- temporal statistics: P10-P90 of the statistic over Beijing's 960 stations, compared with the median
  over the synthetic city's stations (a synthetic station should behave like a real one);
- spatial statistics (load distribution over stations, share of load near the centre with radii scaled by
  size_km / 23.5): P5-P95 of the statistic over 1,000 random subsets of Milan cells of the synthetic
  city's size (bootstrap with replacement at full size), widened to at least +-5 % of Milan's value;
- mobility: the interquartile range of GeoLife's user-days, compared with the synthetic median.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cellsynth.data.model import Stations, StationTraffic
from cellsynth.data.summary import (
    daily_profile,
    haversine_km,
    load_distribution,
    mobility_statistics,
    top_share,
    traffic_statistics,
    trajectory_statistics,
)
from cellsynth.data.synthetic import (
    CityConfig,
    build_layout,
    synthesize_city,
    synthesize_traffic,
    synthesize_users,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = ROOT.parent / "shared" / "data"
MILAN_CENTRE = (45.4642, 9.1900)  # Piazza del Duomo
MILAN_GRID_KM = 23.5


# ------------------------------------------------------------------------------------------------------------
# Real data


def beijing_weekend_start(x: np.ndarray) -> int:
    """The day (0..6) that starts Beijing's weekend: of the seven cyclic pairs of consecutive days, the
    pair whose share of the day's traffic in the morning commute (07:00-10:00) is lowest."""
    days = x.sum(axis=0).reshape(7, 24)
    morning = days[:, 7:10].sum(axis=1) / days.sum(axis=1)
    pair = [morning[d] + morning[(d + 1) % 7] for d in range(7)]
    return int(np.argmin(pair))


def load_beijing(shared: Path) -> tuple[StationTraffic, dict]:
    x = np.load(shared / "beijing-stkdiff" / "beijing.npz")["bs_record"]
    saturday = beijing_weekend_start(x)
    first_weekday = (5 - saturday) % 7  # day 0's weekday, 0 = Monday
    start = pd.Timestamp("2026-01-05", tz="Asia/Shanghai") + pd.Timedelta(days=first_weekday)
    stations = Stations(ids=np.array([f"B{i:03d}" for i in range(x.shape[0])], dtype=object))
    traffic = StationTraffic(
        x[:, :, None], start, pd.Timedelta("1h"), ("traffic",), stations, source="beijing"
    )
    return traffic, {"weekend_days": [saturday, (saturday + 1) % 7], "first_weekday": first_weekday}


def load_milan(shared: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cell internet totals and cell centre lat/lon, in grid order."""
    totals = pd.read_csv(shared / "milan" / "square_totals_2mo.csv").set_index("square_id")["internet"]
    grid = json.loads((shared / "milan" / "milano-grid.geojson").read_text())
    ids, lat, lon = [], [], []
    for feature in grid["features"]:
        ring = np.asarray(feature["geometry"]["coordinates"][0], dtype=np.float64)[:-1]
        ids.append(int(feature["properties"]["cellId"]))
        lon.append(ring[:, 0].mean())
        lat.append(ring[:, 1].mean())
    return totals.loc[ids].to_numpy(np.float64), np.asarray(lat), np.asarray(lon)


def load_geolife(shared: Path) -> dict:
    folder = shared / "geolife-movesim"
    loc = np.loadtxt(folder / "real.data", dtype=np.int64)
    gps = np.loadtxt(folder / "gps")
    return trajectory_statistics(loc, gps[:, 0], gps[:, 1], steps_per_day=48, step_hours=0.5)


def centre_shares(load, lat, lon, centre, scale: float) -> dict:
    d = haversine_km(lat, lon, centre[0], centre[1]) / scale
    return {f"within_{r}km": float(load[d < r].sum() / load.sum()) for r in (2, 5, 8)}


def milan_ranges(values, lat, lon, n: int, rng: np.random.Generator, reps: int = 1000) -> dict:
    """P5-P95 of the spatial statistics over random subsets of ``n`` Milan cells, widened to at least +-5 %
    of Milan's own value (at n = 10,000 a subset is Milan itself: the bootstrap spread, about +-1 %, is
    narrower than the synthetic city's own seed-to-seed spread)."""
    replace = n >= len(values)
    stats: dict[str, list] = {}
    for _ in range(reps):
        i = rng.choice(len(values), n, replace=replace)
        s = values[i]
        row = {"top10_share": top_share(s), "log_std": np.log(s).std(), "cv": s.std() / s.mean()}
        row |= centre_shares(s, lat[i], lon[i], MILAN_CENTRE, 1.0)
        for k, v in row.items():
            stats.setdefault(k, []).append(v)
    full = {
        "top10_share": top_share(values),
        "log_std": np.log(values).std(),
        "cv": values.std() / values.mean(),
    }
    full |= centre_shares(values, lat, lon, MILAN_CENTRE, 1.0)
    out = {}
    for k, v in stats.items():
        lo, hi = np.quantile(v, [0.05, 0.95])
        out[k] = [float(min(lo, 0.95 * full[k])), float(max(hi, 1.05 * full[k]))]
    return out


# ------------------------------------------------------------------------------------------------------------
# Synthetic


def synthetic(cfg: CityConfig, beijing_profile: np.ndarray) -> dict:
    t0 = time.perf_counter()
    city = synthesize_city(cfg)
    build_s = time.perf_counter() - t0
    st = city.stations
    internet = city.traffic.channel("internet").astype(np.float64)
    prof = daily_profile(internet, city.traffic.timestamps).mean(axis=0)
    kinds, counts = np.unique(city.station_kind.astype(str), return_counts=True)
    return {
        "config": {
            k: v
            for k, v in cfg.to_dict().items()
            if k in ("n_stations", "n_users", "weeks", "size_km", "seed")
        },
        "build_s": build_s,
        "kg_triplets": len(city.knowledge_graph),
        "kinds": dict(zip(kinds.tolist(), counts.tolist(), strict=True)),
        "traffic": {ch: traffic_statistics(city.traffic, ch) for ch in city.traffic.channels},
        "profile_corr_beijing": float(np.corrcoef(prof, beijing_profile)[0, 1]),
        "mobility": mobility_statistics(city.users),
        "centre": centre_shares(
            internet.mean(axis=1),
            st.lat,
            st.lon,
            (cfg.centre_lat, cfg.centre_lon),
            cfg.size_km / MILAN_GRID_KM,
        ),
    }


# ------------------------------------------------------------------------------------------------------------
# Table


def fmt(x, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, (list, tuple)):
        return "–".join(fmt(v, digits) for v in x)
    if isinstance(x, float) and (abs(x) >= 100 or (x != 0 and abs(x) < 0.01)):
        return f"{x:.3g}"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def inside(value, lo_hi) -> str:
    if value is None or lo_hi is None:
        return "–"
    lo, hi = lo_hi
    return "yes" if lo <= value <= hi else "**no**"


def build_rows(real: dict, syn: dict[str, dict]) -> list[list[str]]:
    bj = real["beijing"]
    names = list(syn)
    rows: list[list[str]] = []

    def q(d, key):
        return None if d is None else d.get(key)

    def add(stat, real_value, real_range, how, values, ranges=None):
        ranges = ranges or [real_range] * len(values)
        cells = [fmt(v) for v in values]
        checks = [inside(v, r) for v, r in zip(values, ranges, strict=True)]
        where = (fmt(real_range) + how) if real_range is not None else how
        rows.append([stat, fmt(real_value), where, *cells, " / ".join(checks)])

    # Temporal: Beijing (one channel, total traffic) vs synthetic internet.
    si = {k: v["traffic"]["internet"] for k, v in syn.items()}
    spread = [bj["station_peak_trough"]["q10"], bj["station_peak_trough"]["q90"]]
    add(
        "daily peak/trough, per station (median)",
        bj["station_peak_trough"]["median"],
        spread,
        " (BJ P10–P90)",
        [s["station_peak_trough"]["median"] for s in si.values()],
    )
    add(
        "daily peak/trough, city profile",
        bj["peak_trough_ratio"],
        spread,
        " (BJ P10–P90)",
        [s["peak_trough_ratio"] for s in si.values()],
    )
    rows.append(
        [
            "peak hour / trough hour, city",
            f"{bj['peak_hour']} / {bj['trough_hour']}",
            "",
            *[f"{s['peak_hour']} / {s['trough_hour']}" for s in si.values()],
            "",
        ]
    )
    add(
        "daily profile correlation with Beijing's",
        1.0,
        [real["profile_corr_p10"], 1.0],
        " (BJ stations P10–1)",
        [v["profile_corr_beijing"] for v in syn.values()],
    )
    ww = [bj["station_weekday_weekend"]["q10"], bj["station_weekday_weekend"]["q90"]]
    add(
        "weekday/weekend ratio, per station (median)",
        bj["station_weekday_weekend"]["median"],
        ww,
        " (BJ P10–P90)",
        [s["station_weekday_weekend"]["median"] for s in si.values()],
    )
    add(
        "weekday/weekend ratio, city",
        bj["weekday_weekend_ratio"],
        ww,
        " (BJ P10–P90)",
        [s["weekday_weekend_ratio"] for s in si.values()],
    )
    acf = [bj["station_acf_lag24"]["q10"], bj["station_acf_lag24"]["q90"]]
    add(
        "lag-24 h autocorrelation (mean over stations)",
        bj["acf_lag24"],
        acf,
        " (BJ P10–P90)",
        [s["acf_lag24"] for s in si.values()],
    )
    add(
        "lag-168 h autocorrelation (mean over stations)",
        None,
        None,
        "no multi-week hourly real data here",
        [s["acf_lag168"] for s in si.values()],
    )
    cv = [bj["station_hourly_cv"]["q10"], bj["station_hourly_cv"]["q90"]]
    add(
        "hourly coefficient of variation, per station (median)",
        bj["station_hourly_cv"]["median"],
        cv,
        " (BJ P10–P90)",
        [s["station_hourly_cv"]["median"] for s in si.values()],
    )
    add("share of zero hours", bj["share_zero"], None, "", [s["share_zero"] for s in si.values()])

    # Spatial: Milan per-cell totals vs synthetic station internet totals.
    mi = real["milan"]
    n_of = {k: v["traffic"]["internet"]["n_stations"] for k, v in syn.items()}
    rng_by = [real["milan_ranges"][n_of[k]] for k in names]

    def subsets(key):
        return "; ".join(f"{fmt(r[key])} (N={n_of[k]})" for k, r in zip(names, rng_by, strict=True))

    for label, key, value in (
        ("top-10 % share of load", "top10_share", lambda s: s["top10_share"]),
        ("station load: std of log", "log_std", lambda s: s["station_load"]["log_std"]),
        ("station load: coefficient of variation", "cv", lambda s: s["station_load"]["cv"]),
    ):
        add(
            label,
            mi[key],
            None,
            f"Milan subsets P5–P95: {subsets(key)}",
            [value(s) for s in si.values()],
            [r[key] for r in rng_by],
        )
    for key in ("q10", "q90", "q99"):
        add(
            f"station load: {key.upper()} / median",
            mi[f"{key}_over_median"],
            None,
            "",
            [s["station_load"][f"{key}_over_median"] for s in si.values()],
        )
    add("station load: Gini", mi["gini"], None, "", [s["station_load"]["gini"] for s in si.values()])
    for r in (2, 5, 8):
        key = f"within_{r}km"
        add(
            f"share of load within {r} km of the centre (radius x size_km / 23.5)",
            real["milan_centre"][key],
            None,
            f"Milan subsets P5–P95: {subsets(key)}",
            [v["centre"][key] for v in syn.values()],
            [rr[key] for rr in rng_by],
        )

    # Mobility: GeoLife vs synthetic users (per user-day).
    gl = real["geolife"]
    sm = {k: v["mobility"] for k, v in syn.items()}
    for label, key in (
        ("jump length, km", "jump_km"),
        ("radius of gyration per day, km", "radius_of_gyration_km"),
        ("distinct locations per day", "distinct_per_day"),
        ("stay duration, hours", "stay_hours"),
    ):
        add(
            f"{label} (median)",
            gl[key]["median"],
            [gl[key]["q25"], gl[key]["q75"]],
            " (GeoLife IQR)",
            [m[key]["median"] for m in sm.values()],
        )
    add(
        "jump length P90, km",
        gl["jump_km"]["q90"],
        None,
        "",
        [m["jump_km"]["q90"] for m in sm.values()],
    )
    add("jumps per day (mean)", gl["jumps_per_day"], None, "", [m["jumps_per_day"] for m in sm.values()])
    return rows


def timing_one(kind: str, weeks: int) -> dict:
    """Stage timings of one build, in this (fresh) process, and the process's peak resident memory."""
    import resource

    cfg = CityConfig(weeks=weeks) if kind == "default" else CityConfig.milan(weeks=weeks)
    t0 = time.perf_counter()
    layout = build_layout(cfg)
    t1 = time.perf_counter()
    traffic = synthesize_traffic(layout)
    t2 = time.perf_counter()
    users = synthesize_users(layout)
    t3 = time.perf_counter()
    return {
        "city": kind,
        "weeks": weeks,
        "stations": cfg.n_stations,
        "size_km": cfg.size_km,
        "traffic_shape": list(traffic.values.shape),
        "traffic_mb": traffic.values.nbytes / 1e6,
        "users_shape": list(users.locations.shape),
        "kg_triplets": len(layout.knowledge_graph),
        "layout_s": t1 - t0,
        "traffic_s": t2 - t1,
        "users_s": t3 - t2,
        "total_s": t3 - t0,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,  # KiB on Linux
    }


def timing_table() -> None:
    columns = [
        "city",
        "stations",
        "traffic",
        "users",
        "KG triplets",
        "layout + KG",
        "traffic",
        "users",
        "total",
    ]
    print("| " + " | ".join([*columns, "peak memory"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind, weeks in (("default", 2), ("default", 1), ("milan", 1), ("milan", 2)):
        run = subprocess.run(
            [sys.executable, __file__, "--timing-one", kind, str(weeks)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(run.stdout)
        print(
            f"| {kind}, {weeks} week(s) | {r['stations']} over {r['size_km']:g} km | {r['traffic_shape']} "
            f"({r['traffic_mb']:.0f} MB) | {r['users_shape'][0]} x {r['users_shape'][1]} | "
            f"{r['kg_triplets']:,} | "
            f"{r['layout_s']:.2f} s | {r['traffic_s']:.2f} s | {r['users_s']:.2f} s | {r['total_s']:.1f} s | "
            f"{r['peak_rss_gb']:.2f} GB |"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared real-data folder")
    parser.add_argument("--quick", action="store_true", help="skip the Milan-scale city")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write every number measured here to this JSON file")
    parser.add_argument(
        "--timing", action="store_true", help="only time the builds (each in a fresh process)"
    )
    parser.add_argument("--timing-one", nargs=2, metavar=("KIND", "WEEKS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timing_one:
        print(json.dumps(timing_one(args.timing_one[0], int(args.timing_one[1]))))
        return 0
    if args.timing:
        timing_table()
        return 0
    if not args.shared.is_dir():
        print(f"real data not found at {args.shared}; pass --shared", file=sys.stderr)
        return 2

    bj_traffic, bj_info = load_beijing(args.shared)
    bj = traffic_statistics(bj_traffic)
    bj_prof = daily_profile(bj_traffic.channel("traffic"), bj_traffic.timestamps)
    bj_city = bj_prof.mean(axis=0)
    corr_st = [np.corrcoef(p, bj_city)[0, 1] for p in bj_prof if p.std() > 0]
    milan_load, milan_lat, milan_lon = load_milan(args.shared)
    real = {
        "beijing": bj,
        "beijing_calendar": bj_info,
        "profile_corr_p10": float(np.quantile(corr_st, 0.1)),
        "milan": load_distribution(milan_load),
        "milan_centre": centre_shares(milan_load, milan_lat, milan_lon, MILAN_CENTRE, 1.0),
        "geolife": load_geolife(args.shared),
        "milan_ranges": {},
    }
    configs = {"default": CityConfig(seed=args.seed)}
    if not args.quick:
        configs["Milan-scale"] = CityConfig.milan(seed=args.seed)
    rng = np.random.default_rng(0)
    syn = {}
    for name, cfg in configs.items():
        syn[name] = synthetic(cfg, bj_city)
        real["milan_ranges"][cfg.n_stations] = milan_ranges(
            milan_load, milan_lat, milan_lon, cfg.n_stations, rng
        )
        print(f"built the {name} city in {syn[name]['build_s']:.1f} s", file=sys.stderr)

    header = ["statistic", "real", "real range (how)", *[f"synthetic {k}" for k in syn], "in range?"]
    print(
        f"<!-- python benchmarks/synthetic_city_stats.py; {time.strftime('%Y-%m-%d')}; "
        f"{platform.machine()} {platform.python_version()} -->"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in build_rows(real, syn):
        print("| " + " | ".join(row) + " |")
    print()
    print(f"Beijing calendar: weekend inferred at days {bj_info['weekend_days']} (0-based) of the week.")
    for name, s in syn.items():
        print(
            f"{name}: {s['config']}, built in {s['build_s']:.1f} s, {s['kg_triplets']} KG triplets, "
            f"dominant kinds {s['kinds']}; call weekday/weekend "
            f"{fmt(s['traffic']['call']['weekday_weekend_ratio'])}, "
            f"sms {fmt(s['traffic']['sms']['weekday_weekend_ratio'])}"
        )
    if args.json:
        args.json.write_text(json.dumps({"real": real, "synthetic": syn}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
