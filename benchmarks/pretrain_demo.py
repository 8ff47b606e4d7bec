"""Train the pretrained MSTDiff that ships inside the package for `cellsynth demo`, and score it.

The demo's city is the seeded default synthetic city (``CityConfig(seed=0)``); its users are split 80/20
with seed 0, exactly as :func:`cellsynth.demo.run_demo` splits them. This script fits MSTDiff's
``recommended`` preset on the 320 training users with the city's knowledge graph, saves it to
``src/cellsynth/pretrained/mstdiff-city/`` (safetensors weights and the JSON config: nothing unpickled on
load), and scores it and the Markov floor against the 80 held-out users, which it never saw.

    OMP_NUM_THREADS=1 python benchmarks/pretrain_demo.py            # about an hour on one core
    python benchmarks/pretrain_demo.py --score-only                 # score the shipped model again
    python benchmarks/pretrain_demo.py --post-fit-only              # the preset's post-fit steps again

``--post-fit-only`` keeps the shipped network and reruns what ``fit`` does after training under the current
``recommended`` preset's sampling (the sampler selection, then the calibration), for a preset whose sampling
or post-fit sections changed: the result is what a fresh fit with the same network gives.

Its scores are recorded in BENCHMARKS.md ("The demo's pretrained model").
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from cellsynth.data.split import split_users
from cellsynth.data.synthetic import CityConfig, synthesize_city
from cellsynth.demo import PRETRAINED_USER_MODEL, pretrained_user_model
from cellsynth.evaluate import evaluate_users
from cellsynth.generators import get
from cellsynth.outputs import MARKER

TRAJECTORY = ("distance", "radius", "distinct_loc", "duration", "g_rank", "i_rank")
TRAFFIC = ("value_jsd", "log_value_jsd", "diff_jsd", "daily_rmse")


def _scores(evaluation) -> dict[str, float]:
    table = {}
    for group, names in (("traffic", TRAFFIC), ("trajectory", TRAJECTORY)):
        for name in names:
            entry = evaluation.metrics.get(group, {}).get(name, {})
            if entry.get("value") is not None:
                table[name] = round(float(entry["value"]), 5)
    return table


def _save_shipped(model) -> None:
    # save() replaces each file atomically in a directory it recognises as a model (the shipped one
    # included), under the same output rule as every model directory: no hand-made delete-and-copy.
    model.save(PRETRAINED_USER_MODEL)
    # The package ships the model's two files only, not the output marker save() adds.
    (PRETRAINED_USER_MODEL / MARKER).unlink(missing_ok=True)
    print(f"saved to {PRETRAINED_USER_MODEL}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score-only", action="store_true", help="Score the shipped model; do not train.")
    parser.add_argument("--draws", type=int, default=3, help="Generated populations scored (seeds 0..n-1).")
    parser.add_argument(
        "--post-fit-only",
        action="store_true",
        help="Keep the shipped network; take the preset's sampling, rerun its sampler selection and "
        "calibration, save, score.",
    )
    parser.add_argument("--checkpoints", default=None, help="Run directory for checkpoints (resumable).")
    args = parser.parse_args()

    city = synthesize_city(CityConfig(seed=0))
    train, held_out = split_users(city.users, 0.2, seed=0)
    if args.post_fit_only:
        preset = get("mstdiff", {"seed": 0}, preset="recommended").config
        model = pretrained_user_model()
        model.config = model.config.model_copy(
            update={
                "sampling": preset.sampling,
                "sampler_selection": preset.sampler_selection,
                "calibration": preset.calibration,
            }
        )
        started = time.perf_counter()
        model.select_sampling(train, progress=True)
        model.calibrate(train)
        print(
            f"post-fit steps in {time.perf_counter() - started:.0f} s; chosen {model.sampler_selection_['chosen']}"
        )
        _save_shipped(model)
    elif not args.score_only:
        run = Path(args.checkpoints or tempfile.mkdtemp(prefix="pretrain-mstdiff-"))
        started = time.perf_counter()
        model = get("mstdiff", {"seed": 0}, preset="recommended")
        model.fit(train, knowledge_graph=city.knowledge_graph, checkpoint_dir=run)
        print(f"fitted in {time.perf_counter() - started:.0f} s")
        _save_shipped(model)
    model = pretrained_user_model()
    floor = get("markov", {"seed": 0}).fit(train, progress=False)
    rows = {}
    for name, generator in (("mstdiff (pretrained, recommended)", model), ("markov (floor)", floor)):
        for draw in range(args.draws):
            started = time.perf_counter()
            users = generator.generate(held_out.n_users, seed=draw)
            seconds = time.perf_counter() - started
            rows.setdefault(name, []).append(
                {"seconds": round(seconds, 1), **_scores(evaluate_users(held_out, users, train=train))}
            )
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
