"""STOUTER at several privacy levels on held-out stations: what differential privacy costs.

Protocol: take ``--stations`` training stations and a quarter as many held-out ones (seeded), fit STOUTER
(``recommended`` preset with the settings a private fit needs, ``--epochs`` STUNet epochs) once per
epsilon (``inf``: the same config without DP-SGD), generate ``--samples`` weeks per held-out station, and
score them with :func:`cellsynth.evaluate.evaluate` (held-out real vs generated; training data for the
normalisation and the membership-inference attack). Per epsilon: value JSD, first-difference JSD, MAE,
TSTR forecast utility, busy-hour P95 error and coverage (channel means), membership-inference AUC, spent
(epsilon, delta) and fit time. Writes ``OUT/privacy-<data>.json``, the trade-off figure
``OUT/privacy-<data>.png`` (:func:`cellsynth.report.figures.privacy_tradeoff`) and the report of every fit
with that figure on top, ``OUT/privacy-<data>.html`` (:func:`cellsynth.report.write_privacy_report`).

Usage (one process; set OMP_NUM_THREADS=1 on a shared machine)::

    cellsynth data import mobifm ../shared/data/mobifm-nanjing/NJTCH.npz \
        --embeddings ../shared/data/mobifm-nanjing/kg_embeddings_NJTCH.npy --out bench/nanjing-traffic
    python benchmarks/privacy.py --data nanjing --traffic bench/nanjing-traffic --out bench-privacy
    python benchmarks/privacy.py --data synthetic --out bench-privacy
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

#: Columns of the table: metrics of Evaluation.value, averaged over channels (normalised scale).
METRICS = {
    name: name
    for name in ("value_jsd", "diff_jsd", "mae", "tstr_utility", "busy_hour_p95_error", "busy_hour_coverage")
}


def load(name: str, traffic: str | None, n_stations: int, seed: int):
    """``(train, held_out)``: ``n_stations`` training stations and ``n_stations // 4`` held-out ones."""
    from cellsynth.data import io
    from cellsynth.data.split import split_stations

    if name == "nanjing":
        data = io.read(traffic)
    else:
        from cellsynth.data.synthetic import CityConfig, synthesize_city

        data = synthesize_city(
            CityConfig(n_stations=n_stations + n_stations // 4, weeks=2, seed=seed)
        ).traffic
    total = n_stations + n_stations // 4
    if data.n_stations > total:
        keep = np.sort(np.random.default_rng(seed).choice(data.n_stations, total, replace=False))
        data = data.select_stations(keep)
    return split_stations(data, (n_stations // 4) / total, seed=seed)


def run_one(epsilon: float, train, held_out, args):
    """``(row, evaluation)``: the table row of one fit and its evaluation."""
    from cellsynth.evaluate import evaluate
    from cellsynth.generators import get, get_class
    from cellsynth.generators.privacy import private_config
    from cellsynth.report.figures import channel_mean

    cls = get_class("stouter")
    values = {"epochs": args.epochs, "pretrain_epochs": args.pretrain_epochs, "seed": args.seed}
    # Every level, inf included, with the settings a private fit needs: the rows differ by DP-SGD alone.
    values = private_config(cls.Config, "stouter", values, 1.0, None)
    if math.isinf(epsilon):
        values.pop("privacy")
    else:
        values["privacy"]["epsilon"] = epsilon
    gen = get("stouter", values, preset="recommended")
    started = time.perf_counter()
    gen.fit(train, progress=False)
    fit_s = time.perf_counter() - started
    generated = gen.generate(held_out.stations, samples=args.samples, seed=args.seed)
    evaluation = evaluate(held_out, generated, train=train)
    row = {"epsilon": epsilon, "fit_s": round(fit_s, 1)}
    for column, metric in METRICS.items():
        row[column] = channel_mean(evaluation, metric)
    row["membership_auc"] = channel_mean(evaluation, "membership_auc")
    spent = gen.privacy_
    row["spent_epsilon"] = None if spent is None else spent["epsilon"]
    row["delta"] = None if spent is None else spent["delta"]
    row["noise_multiplier"] = None if spent is None else spent["noise_multiplier"]
    print(json.dumps(row), flush=True)
    return row, evaluation


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("nanjing", "synthetic"), required=True)
    parser.add_argument(
        "--traffic", help="the Nanjing traffic imported by `cellsynth data import mobifm` (--data nanjing)"
    )
    parser.add_argument("--epsilons", default="1,4,8,inf")
    parser.add_argument("--stations", type=int, default=200, help="training stations")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.data == "nanjing" and args.traffic is None:
        parser.error("--data nanjing needs --traffic DIR, the import of NJTCH.npz (see the usage above)")
    from cellsynth.report import write_privacy_report
    from cellsynth.report.figures import privacy_tradeoff

    train, held_out = load(args.data, args.traffic, args.stations, args.seed)
    print(f"{args.data}: {train.n_stations} training, {held_out.n_stations} held-out stations", flush=True)
    sweep = [(float(e), run_one(float(e), train, held_out, args)) for e in args.epsilons.split(",")]
    rows = [row for _, (row, _) in sweep]
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "data": args.data,
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
    }
    (args.out / f"privacy-{args.data}.json").write_text(json.dumps(record, indent=2))
    evaluations = [(epsilon, evaluation) for epsilon, (_, evaluation) in sweep]
    title = f"STOUTER under differential privacy ({args.data})"
    privacy_tradeoff(evaluations, title=title).savefig(args.out / f"privacy-{args.data}.png", dpi=120)
    write_privacy_report(evaluations, args.out / f"privacy-{args.data}.html", title=title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
