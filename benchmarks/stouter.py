"""STOUTER vs the seasonal-mean floor on held-out stations (the planned-site case).

Protocol (docs/DESIGN.md, Evaluation protocol): split the stations 80/20 (seeded), fit on the training
stations, generate K weeks for every held-out station, score each channel on the normalised scale (divided
by the training maximum of the channel) with :func:`cellsynth.metrics.traffic_metrics`, and run the
memorisation check. Also prints the training time and the generation throughput (station-weeks per
second) of each sampler.

Usage::

    python benchmarks/stouter.py --data beijing                      # ../shared/data/beijing-stkdiff
    python benchmarks/stouter.py --data synthetic --ablation no-stffm
    python benchmarks/stouter.py --data beijing --epochs 20 --samplers ddim-50 --quick   # smoke run

``--set key=value`` overrides any STOUTER config field (repeatable); ``--config`` reads a YAML of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
BEIJING = REPO.parent / "shared" / "data" / "beijing-stkdiff" / "beijing.npz"

ABLATIONS = {
    "none": {},
    "no-temporal": {"use_temporal": False},
    "no-spatial": {"use_spatial": False},
    "no-stffm": {"use_stffm": False},
}
#: "name-steps" -> (sampler, steps); "ddpm-full" runs every training timestep.
SAMPLER_SPECS = {"ddpm-full": ("ddpm", None), "ddim-50": ("ddim", 50), "dpm-solver-20": ("dpm-solver", 20)}


def load_data(name: str, path: str | None, max_stations: int | None, seed: int):
    if name == "beijing":
        path = Path(path) if path else BEIJING
        if not path.exists():
            sys.exit(f"Beijing data not found at {path} (pass --data-path)")
        try:
            from cellsynth.data.loaders import load_stkdiff

            data = load_stkdiff(path)
        except ImportError:  # the loader predates this script in some checkouts
            import pandas as pd

            from cellsynth.data.model import Stations, StationTraffic

            with np.load(path, allow_pickle=False) as npz:
                record, kge = npz["bs_record"], npz["bs_kge"]
            stations = Stations(ids=[str(i) for i in range(len(record))], features=kge)
            data = StationTraffic(
                record[:, :, None],
                pd.Timestamp("2024-01-08", tz="Asia/Shanghai"),
                "1h",
                ("traffic",),
                stations,
            )
    elif name == "synthetic":
        from cellsynth.data.synthetic import synthesize_city

        data = synthesize_city(seed=seed).traffic
    else:
        sys.exit(f"unknown --data {name!r}")
    if max_stations and data.n_stations > max_stations:
        keep = np.sort(np.random.default_rng(seed).choice(data.n_stations, max_stations, replace=False))
        data = data.select_stations(keep)
    return data


def score(train, test, generated, *, steps_per_day: int) -> dict[str, dict[str, float]]:
    """Metrics per channel on the normalised scale (and point errors on the original scale), plus the
    memorisation check (all channels)."""
    from cellsynth.data.samples import split_samples
    from cellsynth.metrics import memorisation_check, paired_errors, traffic_metrics

    _, gen = split_samples(generated)  # [N, K, T, C]
    length = gen.shape[2]
    scale = np.maximum(train.values.max(axis=(0, 1)), 1e-12)  # training maximum per channel
    out = {}
    for c, channel in enumerate(test.channels):
        out[f"{channel}/original"] = paired_errors(test.values[:, :length, c], gen[:, :, :, c])
    real = test.values[:, :length] / scale
    gen = gen / scale
    for c, channel in enumerate(test.channels):
        out[channel] = traffic_metrics(real[:, :, c], gen[:, :, :, c], steps_per_day)
    n_weeks = train.n_steps // length
    train_weeks = (train.values[:, : n_weeks * length] / scale).reshape(
        train.n_stations * n_weeks, length, -1
    )
    mem = memorisation_check(train_weeks, real, gen.reshape(-1, length, gen.shape[-1]))
    out["memorisation"] = {
        k: float(mem[k]) for k in ("dcr_ratio", "near_copy_share", "membership_auc", "flagged") if k in mem
    }
    return out


def profile_correlation(test, generated, steps_per_day: int) -> dict[str, float]:
    """Per channel: correlation between the real and generated mean daily profiles (all held-out stations)."""
    from cellsynth.data.samples import split_samples

    _, gen = split_samples(generated)
    length = gen.shape[2]
    out = {}
    for c, channel in enumerate(test.channels):
        real = test.values[:, :length, c].reshape(-1, steps_per_day).mean(0)
        fake = gen[..., c].reshape(-1, steps_per_day).mean(0)
        out[channel] = float(np.corrcoef(real, fake)[0, 1])
    return out


def level_correlation(test, generated) -> dict[str, float]:
    """Per channel: across held-out stations, the correlation between log1p of the real mean load and of
    the generated mean load (over samples) — does a new site get its own level?"""
    from cellsynth.data.samples import split_samples

    _, gen = split_samples(generated)  # [N, K, T, C]
    length = gen.shape[2]
    real = np.log1p(test.values[:, :length].mean(1))  # [N, C]
    fake = np.log1p(gen.mean(axis=(1, 2)))
    return {ch: float(np.corrcoef(real[:, c], fake[:, c])[0, 1]) for c, ch in enumerate(test.channels)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("beijing", "synthetic"), default="beijing")
    parser.add_argument("--data-path", help="override the Beijing .npz path")
    parser.add_argument("--ablation", choices=tuple(ABLATIONS), default="none")
    parser.add_argument("--config", help="YAML of STOUTER config fields")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override (YAML value)"
    )
    parser.add_argument("--epochs", type=int, help="STUNet epochs (shortcut for --set epochs=N)")
    parser.add_argument("--pretrain-epochs", type=int, help="graph-autoencoder epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--samples", type=int, default=4, help="weeks generated per held-out station")
    parser.add_argument(
        "--samplers", default="ddpm-full,ddim-50,dpm-solver-20", help=f"of {list(SAMPLER_SPECS)}"
    )
    parser.add_argument("--max-stations", type=int, help="random subset of stations (speed)")
    parser.add_argument("--checkpoint-dir", help="checkpoints (a rerun resumes)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    import torch

    from cellsynth.data.split import split_stations
    from cellsynth.generators import get

    if args.threads:
        torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    config = dict(config or {}) | ABLATIONS[args.ablation] | {"seed": args.seed}
    for item in args.set:
        key, _, value = item.partition("=")
        config[key] = yaml.safe_load(value)
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if args.pretrain_epochs is not None:
        config["pretrain_epochs"] = args.pretrain_epochs
    specs = [s.strip() for s in args.samplers.split(",") if s.strip()]
    unknown = [s for s in specs if s not in SAMPLER_SPECS]
    if unknown:
        parser.error(f"unknown sampler(s) {unknown}; choose from {list(SAMPLER_SPECS)}")

    data = load_data(args.data, args.data_path, args.max_stations, args.seed)
    train, test = split_stations(data, args.test_fraction, seed=args.seed)
    steps_per_day = data.steps_per("1D")
    print(
        f"data: {args.data}, {data.n_stations} stations x {data.n_steps} steps x {data.n_channels} channels; "
        f"train {train.n_stations}, held out {test.n_stations}; ablation {args.ablation}"
    )
    results: dict = {"data": args.data, "ablation": args.ablation, "config": config, "generators": {}}

    baseline = get("seasonal-mean").fit(train, progress=False)
    generated = baseline.generate(test, samples=args.samples, seed=args.seed)
    results["generators"]["seasonal-mean"] = {
        "metrics": score(train, test, generated, steps_per_day=steps_per_day),
        "daily_profile_corr": profile_correlation(test, generated, steps_per_day),
        "level_corr": level_correlation(test, generated),
    }

    stouter = get("stouter", config)
    t0 = time.perf_counter()
    stouter.fit(train, progress=not args.quiet, checkpoint_dir=args.checkpoint_dir)
    fit_s = time.perf_counter() - t0
    history = {k: [round(v, 4) for v in vs] for k, vs in stouter.history_.items()}
    results["stouter_fit_seconds"] = fit_s
    results["stouter_history"] = history
    for spec in specs:
        sampler, steps = SAMPLER_SPECS[spec]
        t0 = time.perf_counter()
        generated = stouter.generate(test, samples=args.samples, seed=args.seed, sampler=sampler, steps=steps)
        gen_s = time.perf_counter() - t0
        results["generators"][f"stouter/{spec}"] = {
            "metrics": score(train, test, generated, steps_per_day=steps_per_day),
            "daily_profile_corr": profile_correlation(test, generated, steps_per_day),
            "level_corr": level_correlation(test, generated),
            "station_weeks_per_s": test.n_stations * args.samples / gen_s,
            "generate_seconds": gen_s,
        }

    print(f"\nSTOUTER training: {fit_s:.1f} s")
    for stage, losses in history.items():
        if losses:
            print(f"  {stage}: loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} epochs")
    keys = ("value_jsd", "diff_jsd", "mae", "rmse", "daily_periodic_rmse", "weekly_profile_error")
    for channel in test.channels:
        print(f"\nchannel {channel!r} (normalised scale)")
        extra = ("daily_profile_corr", "level_corr")
        print(f"  {'generator':<24}" + "".join(f"{k:>22}" for k in (*keys, *extra)))
        for name, res in results["generators"].items():
            m = res["metrics"][channel]
            row = "".join(f"{m.get(k, float('nan')):>22.4f}" for k in keys)
            row += "".join(f"{res[k][channel]:>22.4f}" for k in extra)
            print(f"  {name:<24}{row}")
        print(
            "  original scale: "
            + ", ".join(
                f"{name} MAE {res['metrics'][f'{channel}/original']['mae']:.4g} RMSE "
                f"{res['metrics'][f'{channel}/original']['rmse']:.4g}"
                for name, res in results["generators"].items()
            )
        )
    print("\nmemorisation / throughput")
    for name, res in results["generators"].items():
        mem = res["metrics"]["memorisation"]
        speed = res.get("station_weeks_per_s")
        speed_text = f", {speed:.2f} station-weeks/s" if speed else ""
        print(
            f"  {name:<24} dcr_ratio {mem.get('dcr_ratio', float('nan')):.3f}, near-copy share "
            f"{mem.get('near_copy_share', float('nan')):.3f}, flagged {mem.get('flagged')}{speed_text}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
