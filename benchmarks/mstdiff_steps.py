"""MSTDiff's scores and sampling cost against the number of DDIM steps, for one fitted model.

For each step count the model draws ``--draws`` populations (seeds 0..n-1) of as many users as the held-out
set has and scores them against it (:func:`cellsynth.evaluate.evaluate_users`, the training users for the
memorisation check), with the process CPU time of each draw (one torch thread unless ``OMP_NUM_THREADS``
says otherwise). A model with traffic is recalibrated on draws of each step count first (its calibration
holds for the sampler it was fitted on), so every row is the model as it would be used at that count.

    python benchmarks/mstdiff_steps.py                  # the demo's pretrained model, its 80 held-out users
    python benchmarks/mstdiff_steps.py --model bench/users-geolife/runs/mstdiff-recommended/seed0 \\
        --data bench/geolife-train --test bench/geolife-test --locations 400 --steps 50 12
    python benchmarks/mstdiff_steps.py --steps 25 --spacing 1 2    # even steps and s_i ~ S ((n-i)/n)^2

``--spacing`` runs every step count at each ``sampling.step_spacing`` given (the power of the spacing of the
visited discrete steps, :func:`cellsynth.generators.mstdiff.sampler.spaced_steps`).

``--select`` first runs the sampler selection on the training users (:meth:`MSTDiffGenerator.select_sampling`,
with the ``recommended`` preset's candidates for a model whose config has none), so that the draws use
the options it chose; the chosen options and every candidate's scores are printed and kept in ``--out``.

``--data``/``--test``/``--locations`` rebuild the split the model was fitted on, as ``cellsynth bench-users``
builds it (a separate test set, the training users' most visited locations). Prints a markdown table (mean
± sd over the draws) and writes ``--out`` (JSON) when given. Recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

TRAFFIC = ("value_jsd", "log_value_jsd", "diff_jsd")
TRAJECTORY = ("distance", "radius", "distinct_loc", "duration", "g_rank", "i_rank")


def held_out_split(args):
    """``(train, held_out)``: the demo's split of its city, or the bench-users split of ``--data``/``--test``."""
    from cellsynth.benchmark.users import prepare_users
    from cellsynth.data import read
    from cellsynth.data.split import split_users
    from cellsynth.data.synthetic import CityConfig, synthesize_city

    if args.data is None:
        return split_users(synthesize_city(CityConfig(seed=0)).users, 0.2, seed=0)
    test = None if args.test is None else read(args.test)
    train, held_out, _ = prepare_users(read(args.data), test, locations=args.locations)
    return train, held_out


def scores(evaluation) -> dict[str, float]:
    out = {}
    for group, names in (("traffic", TRAFFIC), ("trajectory", TRAJECTORY)):
        for name in names:  # GeoLife has no traffic: no traffic group at all
            value = evaluation.metrics.get(group, {}).get(name, {}).get("value")
            if value is not None:
                out[name] = float(value)
    out["near_copy_share"] = float(evaluation.memorisation["near_copy_share"])
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="Saved MSTDiff (default: the demo's).")
    parser.add_argument("--data", type=Path, default=None, help="Training users (default: the demo city's).")
    parser.add_argument("--test", type=Path, default=None, help="Held-out users from another dataset.")
    parser.add_argument(
        "--locations", type=int, default=None, help="Keep this many locations, as bench-users."
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 25, 20, 12, 8, 6])
    parser.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        default=[1.0],
        help="sampling.step_spacing values, each with every step count (1: even steps).",
    )
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON of every draw.")
    parser.add_argument(
        "--select", action="store_true", help="Run the sampler selection on the training users first."
    )
    args = parser.parse_args(argv)

    from cellsynth.demo import pretrained_user_model
    from cellsynth.evaluate import evaluate_users
    from cellsynth.generators import get, load

    train, held_out = held_out_split(args)
    rows: dict[str, list[dict]] = {}
    selections = {}
    for steps, spacing in itertools.product(args.steps, args.spacing):
        label = f"{steps}" if spacing == 1 else f"{steps}, spaced {spacing:g}"
        model = pretrained_user_model() if args.model is None else load(args.model)
        model.config = model.config.model_copy(
            update={"sampling": model.config.sampling.model_copy(update={"step_spacing": spacing})}
        )
        if args.select:
            if not model.config.sampler_selection.candidates:
                preset = get("mstdiff", preset="recommended").config.sampler_selection
                model.config = model.config.model_copy(update={"sampler_selection": preset})
            model.config = model.config.model_copy(
                update={
                    "sampling": model.config.sampling.model_copy(update={"sampler": "ddim", "steps": steps})
                }
            )
            model.select_sampling(train)
            selections[label] = model.sampler_selection_
            print(f"DDIM {label}, sampler selection: " + json.dumps(model.sampler_selection_), flush=True)
        if model.traffic_ and train.has_traffic:
            model.calibrate(train, sampler="ddim", steps=steps)
        for draw in range(args.draws):
            started = time.process_time()
            users = model.generate(held_out.n_users, seed=draw, sampler="ddim", steps=steps)
            cpu = time.process_time() - started
            row = {"cpu_seconds": cpu, **scores(evaluate_users(held_out, users, train=train))}
            rows.setdefault(label, []).append(row)
            print(
                f"DDIM {label}, draw {draw}: " + json.dumps({k: round(v, 5) for k, v in row.items()}),
                flush=True,
            )
    names = list(next(iter(rows.values()))[0])
    print(
        f"\n{held_out.n_users} users a draw, {args.draws} draws, {torch.get_num_threads()} torch thread(s)\n"
    )
    print("| DDIM steps | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for label, draws in rows.items():
        cells = []
        for name in names:
            v = np.array([d[name] for d in draws])
            digits = 1 if name == "cpu_seconds" else (4 if abs(v.mean()) < 0.01 else 3)
            cells.append(f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0:.{digits}f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.out is not None:
        out = dict(rows)
        if selections:
            out["sampler_selection"] = selections
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
