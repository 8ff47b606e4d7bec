"""STOUTER at several privacy levels on held-out stations: what differential privacy costs.

Protocol: take ``--stations`` training stations and a quarter as many held-out ones (seeded), fit STOUTER
(``recommended`` preset with the settings a private fit needs, ``--epochs`` STUNet epochs) once per
epsilon (``inf``: the same config without DP-SGD), generate ``--samples`` weeks per held-out station, and
score them with :func:`cellsynth.evaluate.evaluate` (held-out real vs generated; training data for the
normalisation and the membership-inference attack). Per epsilon: value JSD, first-difference JSD, MAE,
TSTR forecast utility, busy-hour P95 error and coverage (channel means), membership-inference AUC, spent
(epsilon, delta) and fit time. Writes ``OUT/privacy-<data>.json`` and a trade-off figure ``OUT/privacy-<data>.png``.

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


def run_one(epsilon: float, train, held_out, args) -> dict:
    from cellsynth.evaluate import evaluate
    from cellsynth.generators import get, get_class
    from cellsynth.generators.privacy import private_config

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
        per_channel = [evaluation.value(channel, metric) for channel in held_out.channels]
        per_channel = [v for v in per_channel if v is not None]
        row[column] = float(np.mean(per_channel)) if per_channel else None
    row["membership_auc"] = (evaluation.memorisation or {}).get("membership_auc")
    spent = gen.privacy_
    row["spent_epsilon"] = None if spent is None else spent["epsilon"]
    row["delta"] = None if spent is None else spent["delta"]
    row["noise_multiplier"] = None if spent is None else spent["noise_multiplier"]
    print(json.dumps(row), flush=True)
    return row


def figure(rows: list[dict], path: Path, title: str) -> None:
    """Utility and fidelity against epsilon (inf drawn at the right edge)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [r["epsilon"] for r in rows if math.isfinite(r["epsilon"])]
    edge = 2 * max(finite) if finite else 1.0
    xs = [r["epsilon"] if math.isfinite(r["epsilon"]) else edge for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, (column, label) in zip(
        axes,
        (("value_jsd", "value JSD (lower better)"), ("tstr_utility", "TSTR utility (higher better)"),
         ("membership_auc", "membership AUC (0.5 = none)")),
        strict=True,
    ):  # fmt: skip
        ax.plot(xs, [r[column] for r in rows], "o-")
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{r['epsilon']:g}" if math.isfinite(r["epsilon"]) else "inf" for r in rows])
        ax.set_xlabel("epsilon")
        if column == "membership_auc":
            ax.set_ylim(0.3, 1.0)  # on the scale of the attack: 0.5 none, 1 every member found
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


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
    train, held_out = load(args.data, args.traffic, args.stations, args.seed)
    print(f"{args.data}: {train.n_stations} training, {held_out.n_stations} held-out stations", flush=True)
    rows = [run_one(float(e), train, held_out, args) for e in args.epsilons.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "data": args.data,
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
    }
    (args.out / f"privacy-{args.data}.json").write_text(json.dumps(record, indent=2))
    figure(rows, args.out / f"privacy-{args.data}.png", f"STOUTER under differential privacy ({args.data})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
