"""MSTDiff vs its ablations and the Markov floor, on synthetic-city users and on GeoLife trajectories.

Tables I and II themselves (MSTDiff's traffic and trajectory tables, mean ± sd over seeds, the noise level,
memorisation, fit and sampling time, resumable, ``--jobs``) come from ``cellsynth bench-users``
(``cellsynth.benchmark.users``; rows in ``benchmarks/suites/``). This script keeps the diagnostics that table
does not have: samplers and calibrations of one fitted model, held-out anchors, the per-user counts behind
the JSDs (distinct stations, stays, one-step returns and pass-throughs, oscillations, daytime at home).

Synthetic city (``synthesize_city``: users at 30-minute steps over a week, T = 336, with traffic and the
city's knowledge graph), users split 80/20 (``split_users``, seeded); each model is fitted on the 80 %
and generates as many users as were held out; the held-out users are the reference:

- traffic: JSD of values (and of log values, which heavy-tailed user traffic needs), JSD of first differences along time, RMSE of the daily-frequency share
  (``steps_per_day=48``, ``paired=False``: sets compared at matched quantiles) — cellsynth.metrics, shared
  bins, base 2;
- trajectories: the six MoveSim JSDs (distance, radius, distinct locations, duration, G-rank, I-rank);
- fit and sampling wall time.

Every table starts with a ``real`` row: as many *training* users as were held out, scored against the
held-out ones. It is the JSD two independent samples of that size have by chance, the level below which no
generator can be told from the data (a model or the floor under it has matched the data, not beaten it).
``--seeds N`` draws each model N times (and N training subsets for the ``real`` row) and prints the mean
± sd of each cell: one draw of 80 users is noisy (see
docs/notebook/2026-11-22-mstdiff-five-draws-noise-level.md). Each draw's own row goes to stderr.

``--reference-users M`` scores against M fresh users of the same city instead (``synthesize_users`` with
another seed: new people, same stations and habits), and every model generates M users. The ``real`` row is
then a second fresh population of M users, so the noise level falls with M: at 80 held-out users the
traffic JSDs of MSTDiff, the floor and real data are all within each other's noise
(docs/notebook/2026-11-22-mstdiff-five-draws-noise-level.md).

Models: ``mstdiff`` (joint, transitions from TuckER on the knowledge graph), ``mstdiff-no-trajectory``
(``trajectory=False``: traffic only; its locations come from the Markov floor, so its trajectory row
measures that chain), ``mstdiff-no-kg`` (``kg=False``: uniform transitions), ``markov``.

GeoLife (``../shared/data/geolife-movesim``, MoveSim's files, T = 48, no traffic): trajectory-only mstdiff
(transitions from geographic neighbours: there is no knowledge graph) vs markov, six trajectory JSDs on
``test.data``. GeoLife has ~18,000 visited locations, too many for a dense N x N rate matrix, so the
benchmark keeps the ``--geolife-locations`` most visited locations of the training users and maps every
other location to the nearest kept one (great-circle), and subsamples ``--geolife-users`` training and
``--geolife-test-users`` test user-days. It prints what it kept.

    python benchmarks/mstdiff.py                    # full run (the lead's)
    python benchmarks/mstdiff.py --quick            # smoke run: tiny city, a few epochs, < 3 minutes
    python benchmarks/mstdiff.py --preset paper --config configs/cpu/mstdiff-paper.yaml   # the paper at CPU size
    python benchmarks/mstdiff.py --preset recommended --samplers ddim-50 ddpm
    python benchmarks/mstdiff.py --only mstdiff --save bench/runs   # keep the fitted models (rerun: resume) ...
    python benchmarks/mstdiff.py --only mstdiff --load bench/runs   # ... and score them again
    python benchmarks/mstdiff.py --only mstdiff markov --load bench/runs --seeds 5   # mean ± sd of 5 draws
    python benchmarks/mstdiff.py --only mstdiff --load bench/runs --held-out-anchors  # a model with anchors
    python benchmarks/mstdiff.py --only mstdiff markov --load bench/runs --reference-users 800
    python benchmarks/mstdiff.py --only mstdiff markov --load bench/runs --reference-users 2000 --decimals 6

``--samplers`` scores each fitted MSTDiff with every listed sampler (``ddpm``: the full chain; ``ddim-K``:
K steps), one row each: the DDIM-vs-full-chain comparison of the same model. Each MSTDiff draw with traffic
is scored through each calibration of that one draw (``calibration``: quantiles, zeros, none = raw).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial import cKDTree

from cellsynth.data.model import Stations, UserMobility
from cellsynth.data.split import split_users
from cellsynth.data.synthetic import synthesize_city, synthesize_users
from cellsynth.generators import get, load
from cellsynth.generators.floors.markov import hour_keys
from cellsynth.generators.mstdiff.anchors import top_locations
from cellsynth.generators.mstdiff.calibration import CALIBRATION_MODES
from cellsynth.generators.mstdiff.config import MSTDiffConfig
from cellsynth.generators.mstdiff.oscillations import find_oscillations
from cellsynth.generators.presets import merge_config, preset
from cellsynth.graphs.transitions import nearest_stations
from cellsynth.metrics import daily_periodic_rmse, diff_jsd, log_value_jsd, trajectory_jsds, value_jsd
from cellsynth.metrics.mobility import (
    distinct_location_share,
    one_step_stays,
    stay_durations,
    time_at_top_location,
)

ROOT = Path(__file__).resolve().parents[1]
GEOLIFE = ROOT.parent / "shared" / "data" / "geolife-movesim"

QUICK = {
    "d_model": 32,
    "layers_per_scale": 1,
    "full_res_layers": 0,
    "ff_mult": 2,
    "epochs": 4,
    "batch_size": 32,
    "vq_epochs": 2,
    "tucker_epochs": 5,
    "gaussian_steps": 20,
    "beta_schedule": "squaredcos_cap_v2",  # reaches N(0, I) in 20 steps; linear to 0.1 would not
    "discrete_steps": 10,
}


def _config(preset_name: str | None, path: str | None, quick: bool) -> dict:
    """MSTDiff's options: the file at ``path`` on top of preset ``preset_name`` (None: the config's defaults),
    each section merged key by key (old flat names read as the nested ones), then the ``--quick`` sizes."""
    values = MSTDiffConfig.nest_moved(preset("mstdiff", preset_name) if preset_name else {})
    values = merge_config(
        values, MSTDiffConfig.nest_moved(yaml.safe_load(Path(path).read_text()) or {} if path else {})
    )
    return merge_config(values, QUICK if quick else {})


def _fit(args, label: str, name: str, config: dict, train: UserMobility, **fit_kw):
    """``(generator, fit seconds)``: fitted here, or loaded from ``--load`` (with the fit time it took)."""
    if args.load and (Path(args.load) / label / "fit.json").exists():
        run = Path(args.load) / label
        gen = load(run / "model")
        if gen.name == "mstdiff" and gen.traffic_ and "moment_map" not in (gen.calibration_ or {}):
            # saved before calibration (or its 'moments' mode) existed; not counted in fit_s. The same seed
            # draws the same calibration users, so the other modes' maps come out as they were saved.
            gen.calibrate(train)
        return gen, json.loads((run / "fit.json").read_text())["fit_s"]
    gen = get(name, config)
    # With --save, checkpoints go beside the saved model (RUN/LABEL/checkpoints/), so rerunning a killed
    # command resumes the fit (the time before the kill is then not in fit_s).
    checkpoints = Path(args.save) / label if args.save else None
    t0 = time.perf_counter()
    gen.fit(train, progress=False, checkpoint_dir=checkpoints, **fit_kw)
    fit_s = time.perf_counter() - t0
    if args.save:
        run = Path(args.save) / label
        gen.save(run / "model")
        (run / "fit.json").write_text(json.dumps({"fit_s": fit_s, "config": config}))
    return gen, fit_s


def _sampler(spec: str) -> dict:
    """``"ddpm"`` -> the full chain; ``"ddim-K"`` -> DDIM with K steps; ``"ddim"`` -> DDIM's default."""
    name, _, steps = spec.partition("-")
    if name not in ("ddpm", "ddim") or (steps and not steps.isdigit()):
        raise SystemExit(f"--samplers: expected ddpm, ddim or ddim-K, got {spec!r}")
    return {"sampler": name, "steps": int(steps) if steps else None}


def _runs(args, label: str, gen, n: int, seed: int, anchors=None):
    """``(row label, generated, sampling seconds)`` per sampler in ``--samplers`` (one run for non-MSTDiff),
    drawn with ``seed``. An MSTDiff with traffic draws once per sampler and gets one row per calibration of
    that draw (``quantiles``, ``zeros``, ``none`` = the raw model): what the post-processing changes.
    ``anchors``: given to an MSTDiff fitted with anchors instead of drawing them."""
    specs = args.samplers if gen.name == "mstdiff" else [None]
    for spec in specs:
        calibrated = gen.name == "mstdiff" and gen.calibration_ is not None
        raw = gen
        if calibrated:
            raw = copy.copy(gen)
            calibration = gen.config.calibration.model_copy(update={"mode": "none"})
            raw.config = gen.config.model_copy(update={"calibration": calibration})
        t0 = time.perf_counter()
        options = (
            _sampler(spec)
            | {
                "temperature": args.temperature,
                "corrector_rounds": args.corrector_rounds,
                "trajectory_substeps": args.trajectory_substeps,
                "trajectory_coupling": args.trajectory_coupling,
            }
            if spec
            else {}
        ) | ({"anchors": anchors} if anchors is not None else {})
        out = raw.generate(n, seed=seed, **options)
        elapsed = time.perf_counter() - t0
        row = f"{label} ({spec})" if spec and len(specs) > 1 else label
        if not calibrated:
            yield row, out, elapsed
            continue
        for mode in CALIBRATION_MODES:
            yield (
                f"{row}, calibration {mode}",
                replace(out, traffic=gen.calibrated(out.traffic, mode)),
                elapsed,
            )


def _seeds(args) -> list[int]:
    first = args.seed if args.first_draw is None else args.first_draw
    return list(range(first, first + args.seeds))


def _real_reference(train: UserMobility, n: int, seed: int) -> UserMobility:
    """``n`` training users drawn without replacement: real data scored like a generator's output, so its
    row is the JSD two independent samples of the same size have by chance (the data's noise level)."""
    rng = np.random.default_rng(seed)
    return train.select_users(np.sort(rng.choice(train.n_users, min(n, train.n_users), replace=False)))


FORMATS = {
    "sample_s": ".0f",
    "distinct_per_user": ".1f",
    "stays_per_user": ".1f",
    "one_step_stays": ".2f",
    "returns_per_user": ".1f",
    "pass_throughs_per_user": ".1f",
}


def _row(label: str, runs: list[dict], keys: list[str], decimals: int = 4) -> str:
    """One table row: each cell the mean over ``runs`` (one dict per seed), with ``± sd`` (ddof 1) when
    there are several; the scores (columns without their own format) with ``decimals`` decimals."""

    def cell(key: str) -> str:
        values = [r[key] for r in runs if key in r]
        if not values:
            return "-"
        if isinstance(values[0], str):
            return values[0]
        fmt = FORMATS.get(key, f".{decimals}f")
        mean = format(float(np.mean(values)), fmt)
        return f"{mean} ± {float(np.std(values, ddof=1)):{fmt}}" if len(values) > 1 else mean

    return f"| {label} | " + " | ".join(cell(k) for k in keys) + " |"


def _score_rows(args, label: str, gen, n: int, fit_s: float, score, keys: list[str], anchors=None) -> None:
    """Draw ``n`` users from ``gen`` with every seed of ``--seeds``, score each draw with ``score(out)``
    (a dict) and print one row per sampler/calibration: the mean (± sd) over seeds."""
    rows: dict[str, list[dict]] = {}
    for seed in _seeds(args):
        for row, out, sample_s in _runs(args, label, gen, n, seed, anchors):
            run = score(out) | {"fit_s": f"{fit_s:.0f}", "sample_s": sample_s}
            rows.setdefault(row, []).append(run)
            if args.seeds > 1:  # each draw on stderr, so the mean's table stays clean
                print(_row(f"{row}, seed {seed}", [run], keys, args.decimals), file=sys.stderr, flush=True)
    for row, runs in rows.items():
        print(_row(row, runs, keys, args.decimals), flush=True)


def synthetic(args, base: dict) -> None:
    city = synthesize_city(n_stations=args.stations, n_users=args.users, seed=args.seed)
    train, test = split_users(city.users, 0.2, seed=args.seed)
    kind = "held-out"
    if args.reference_users:
        # seeds no city draws its users with (those use the city seed); the noise row's population is another
        test = synthesize_users(city.layout, n_users=args.reference_users, seed=args.seed + 10_000)
        kind = "fresh reference"
    st = city.stations
    real = _trajectory_counts(test)
    print(
        f"\n## Synthetic city: {len(st)} stations, {train.n_users} training / {test.n_users} {kind} users, "
        f"T = {train.n_steps}, knowledge graph of {len(city.knowledge_graph)} triplets; the {kind} users "
        f"visit {real['distinct_per_user']:.1f} distinct stations and make {real['stays_per_user']:.1f} stays "
        f"each ({real['one_step_stays']:.2f} of them one step long), and spend {real['daytime_at_top']:.2f} of "
        "10:00-16:00 at their most-visited station\n"
    )
    models = [
        ("mstdiff", "mstdiff", base, {"knowledge_graph": city.knowledge_graph}),
        ("mstdiff-no-trajectory", "mstdiff", base | {"trajectory": False}, {}),
        ("mstdiff-no-kg", "mstdiff", base | {"kg": False}, {}),
        ("markov", "markov", {}, {}),
    ]
    keys = [
        "value_jsd",
        "log_value_jsd",
        "diff_jsd",
        "daily_rmse",
        "distance",
        "radius",
        "distinct_loc",
        "duration",
        "g_rank",
    ]
    keys += ["i_rank", "distinct_per_user", "stays_per_user", "one_step_stays", "returns_per_user"]
    keys += ["pass_throughs_per_user", "oscillations_per_user", "daytime_at_top", "fit_s", "sample_s"]
    print("| model | " + " | ".join(keys) + " |")
    print("|" + "---|" * (len(keys) + 1))
    score = partial(_score_synthetic, test)
    if args.reference_users:
        again = partial(synthesize_users, city.layout, n_users=test.n_users)
        reference = [score(again(seed=20_000 + seed)) for seed in _seeds(args)]
        print(
            _row(f"real: {test.n_users} other fresh users (noise level)", reference, keys, args.decimals),
            flush=True,
        )
    else:
        reference = [score(_real_reference(train, test.n_users, seed)) for seed in _seeds(args)]
        print(
            _row(f"real: {test.n_users} training users (noise level)", reference, keys, args.decimals),
            flush=True,
        )
    for label, name, config, fit_kw in models:
        if args.only and label not in args.only:
            continue
        gen, fit_s = _fit(args, label, name, config, train, **fit_kw)
        _score_rows(args, label, gen, test.n_users, fit_s, score, keys)
        if args.held_out_anchors and getattr(gen, "n_anchors", 0):
            own = top_locations(test.locations, gen.n_anchors)
            _score_rows(args, f"{label}, {kind} users' anchors", gen, test.n_users, fit_s, score, keys, own)


def _score_synthetic(test: UserMobility, out: UserMobility) -> dict[str, float]:
    st = test.stations
    r = {
        "value_jsd": value_jsd(test.traffic, out.traffic),
        "log_value_jsd": log_value_jsd(test.traffic, out.traffic),
        "diff_jsd": diff_jsd(test.traffic, out.traffic),
        "daily_rmse": daily_periodic_rmse(test.traffic, out.traffic, 48, paired=False),
    }
    r |= trajectory_jsds(test.locations, out.locations, st.lat, st.lon)
    return r | _trajectory_counts(out)


def daytime_at_top(locations, hours: np.ndarray) -> float:
    """The mean share of 10:00-16:00 (``hours``: each step's hour of the day, ``hour_keys``) that users spend
    at their own most-visited station (``cellsynth.metrics.time_at_top_location``): about 0.4 for the
    synthetic city's held-out users, who are mostly at work then."""
    return float(time_at_top_location(np.asarray(locations), (hours >= 10) & (hours < 16)).mean())


def _trajectory_counts(data: UserMobility) -> dict[str, float]:
    """Mean distinct stations and mean stays (runs at one station) per user, the share of stays that last
    one step, the one-step stays per user that return (``a b a``) or pass through (``a b c``), the
    returns to one of the 3 nearest stations (cell oscillations, ``cellsynth.generators.mstdiff.oscillations``),
    and the share of 10:00-16:00 that users spend at their most-visited station: what the JSDs summarise."""
    locations = data.locations
    users, steps = np.shape(locations)
    hours = hour_keys(data.start, data.step, steps, weekly=False)
    durations = stay_durations(locations)
    returns, through = one_step_stays(locations)
    nearest = nearest_stations(data.stations.lat, data.stations.lon, 3)
    return {
        "distinct_per_user": float(distinct_location_share(locations).mean() * steps),
        "stays_per_user": len(durations) / users,
        "one_step_stays": float((durations == 1).mean()),
        "returns_per_user": float(returns.mean()),
        "pass_throughs_per_user": float(through.mean()),
        "oscillations_per_user": float(find_oscillations(locations, nearest).sum() / users),
        "daytime_at_top": daytime_at_top(locations, hours),
    }


def _geolife(args) -> tuple[UserMobility, UserMobility] | None:
    from cellsynth.data.loaders import load_location_sequences

    if not (GEOLIFE / "real.data").exists():
        print(f"\n(GeoLife skipped: {GEOLIFE} not found)")
        return None
    kw = {"only_visited": False}
    real = load_location_sequences(GEOLIFE / "real.data", GEOLIFE / "gps", **kw)
    test = load_location_sequences(GEOLIFE / "test.data", GEOLIFE / "gps", **kw)
    rng = np.random.default_rng(args.seed)
    real = real.select_users(
        np.sort(rng.choice(real.n_users, min(args.geolife_users, real.n_users), replace=False))
    )
    test = test.select_users(
        np.sort(rng.choice(test.n_users, min(args.geolife_test_users, test.n_users), replace=False))
    )
    counts = np.bincount(real.locations.ravel(), minlength=len(real.stations))
    kept = np.sort(np.argsort(-counts, kind="stable")[: args.geolife_locations])
    lat, lon = real.stations.lat, real.stations.lon

    def xyz(i):
        phi, lam = np.radians(lat[i]), np.radians(lon[i])
        return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)

    nearest = cKDTree(xyz(kept)).query(xyz(np.arange(len(lat))))[1]  # every location -> nearest kept one
    stations = Stations(real.stations.ids[kept], lat[kept], lon[kept])

    def remap(data: UserMobility) -> UserMobility:
        return UserMobility(nearest[data.locations], data.start, data.step, stations, user_ids=data.user_ids)

    share = counts[kept].sum() / counts.sum()
    print(
        f"\n## GeoLife (MoveSim): {real.n_users} training / {test.n_users} test user-days (T = {real.n_steps}); "
        f"kept the {len(kept)} most visited of {int((counts > 0).sum())} visited locations ({share:.1%} of "
        "training visits), others mapped to the nearest kept location\n"
    )
    return remap(real), remap(test)


def geolife(args, base: dict) -> None:
    data = _geolife(args)
    if data is None:
        return
    train, test = data
    st = train.stations
    keys = ["distance", "radius", "distinct_loc", "duration", "g_rank", "i_rank", "fit_s", "sample_s"]
    print("| model | " + " | ".join(keys) + " |")
    print("|" + "---|" * (len(keys) + 1))

    def score(out: UserMobility) -> dict[str, float]:
        return trajectory_jsds(test.locations, out.locations, st.lat, st.lon)

    reference = [score(_real_reference(train, test.n_users, seed)) for seed in _seeds(args)]
    print(
        _row(f"real: {test.n_users} training user-days (noise level)", reference, keys, args.decimals),
        flush=True,
    )
    for label, name, config in (("mstdiff", "mstdiff", base), ("markov", "markov", {})):
        gen, fit_s = _fit(args, f"geolife-{label}", name, config, train)
        _score_rows(args, label, gen, test.n_users, fit_s, score, keys)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--preset",
        choices=["paper", "recommended"],
        help="MSTDiff preset the --config files go on top of (default: none, the config's defaults).",
    )
    p.add_argument("--config", help="YAML of mstdiff options (e.g. configs/cpu/mstdiff-paper.yaml).")
    p.add_argument(
        "--geolife-config", help="YAML of mstdiff options for GeoLife (configs/geolife/mstdiff.yaml)."
    )
    p.add_argument("--stations", type=int, default=150)
    p.add_argument("--users", type=int, default=400)
    p.add_argument(
        "--reference-users",
        type=int,
        default=0,
        help="Synthetic city: score against this many fresh users of the same city (and generate as many) "
        "instead of the 20 %% held out; 0: the held-out users.",
    )
    p.add_argument("--seed", type=int, default=0, help="Seed of the city, the split and the first draw.")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="Draws per model (seeds SEED..SEED+N-1); with N > 1 each cell is the mean ± sd over them.",
    )
    p.add_argument(
        "--first-draw",
        type=int,
        help="Seed of the first draw (default: --seed): more draws of the same city and split in another run.",
    )
    p.add_argument(
        "--decimals",
        type=int,
        default=4,
        help="Decimals of the scores in the tables (more to compare models against a large reference).",
    )
    p.add_argument(
        "--samplers",
        nargs="+",
        default=["ddim-50"],
        help="MSTDiff samplers: ddpm, ddim or ddim-K (one row each).",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="MSTDiff's trajectory temperature (default: the model's config; 1: Algorithm 2).",
    )
    p.add_argument(
        "--corrector-rounds",
        type=int,
        default=None,
        help="MSTDiff's trajectory corrector rounds per reverse step (default: the model's config; 0: "
        "Algorithm 2).",
    )
    p.add_argument(
        "--trajectory-substeps",
        type=int,
        default=None,
        help="MSTDiff: reverse steps of the trajectory per step of the plain chain (default: the model's "
        "config; 1: Algorithm 2).",
    )
    p.add_argument(
        "--trajectory-coupling",
        type=float,
        default=None,
        help="MSTDiff: noise correlation between a user's consecutive time steps in each reverse step "
        "(default: the model's config; 0: Algorithm 2's independent draws).",
    )
    p.add_argument("--save", help="Directory to keep each fitted model in (<dir>/<model>/).")
    p.add_argument("--load", help="Directory of models kept by --save: reuse them instead of fitting.")
    p.add_argument("--only", nargs="*", help="Synthetic-city models to run (default: all).")
    p.add_argument("--skip-city", action="store_true")
    p.add_argument("--skip-geolife", action="store_true")
    p.add_argument("--geolife-users", type=int, default=2000)
    p.add_argument("--geolife-test-users", type=int, default=500)
    p.add_argument("--geolife-locations", type=int, default=400)
    p.add_argument(
        "--held-out-anchors",
        action="store_true",
        help="MSTDiff fitted with anchors: also generate the held-out users from their own anchors (a "
        "diagnostic: the chain without the anchor model's error; not a fair comparison).",
    )
    p.add_argument("--quick", action="store_true", help="Smoke run: tiny sizes and epochs (not for quality).")
    args = p.parse_args(argv)
    if args.quick:
        args.stations, args.users = min(args.stations, 20), min(args.users, 60)
        args.geolife_users, args.geolife_test_users = (
            min(args.geolife_users, 100),
            min(args.geolife_test_users, 50),
        )
        args.geolife_locations = min(args.geolife_locations, 50)
        args.samplers = ["ddim-5"]
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
    print(
        f"# MSTDiff benchmark (seed {args.seed}, {args.seeds} draw(s) per model (seeds {_seeds(args)}), samplers {' '.join(args.samplers)}, "
        + ", ".join(
            f"{name} {'as configured' if value is None else value}"
            for name, value in (
                ("temperature", args.temperature),
                ("corrector rounds", args.corrector_rounds),
                ("trajectory sub-steps", args.trajectory_substeps),
                ("trajectory coupling", args.trajectory_coupling),
            )
        )
        + ")"
    )
    if not args.skip_city:
        synthetic(args, _config(args.preset, args.config, args.quick))
    if not args.skip_geolife:
        geolife(args, _config(args.preset, args.geolife_config or args.config, args.quick))


if __name__ == "__main__":
    main()
