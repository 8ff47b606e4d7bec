"""Do two versions of cellsynth fit and generate the same? A check for refactors that should change nothing.

Each *run* below fits one registered generator (some in more than one configuration: the ones the leaderboard
in BENCHMARKS.md measured) on a small synthetic city with a fixed seed, generates from it, and records what
came out: the city's arrays, the resolved config, the loss history, the saved weights, the generated arrays
(SHA-256 of their bytes) and the scores of the generated data against the held-out data. Run it once with
each version on ``PYTHONPATH`` and compare the two files::

    git worktree add ../old <commit>                       # the version before the change
    OMP_NUM_THREADS=1 PYTHONPATH=../old/src python benchmarks/equivalence.py run --out old.json \
        --save-models old-models
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/equivalence.py run --out new.json
    PYTHONPATH=src python benchmarks/equivalence.py compare old.json new.json    # markdown table
    # models saved by the old version, loaded and generating with the new one:
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/equivalence.py run --out loaded.json \
        --load-models old-models
    PYTHONPATH=src python benchmarks/equivalence.py compare old.json loaded.json

Identical hashes mean that the change kept every model's outputs bit for bit, so numbers measured before it
still hold (and, with ``--load-models``, that models saved before it still generate what they did).
``compare`` runs with the newer version: it reads the older config through the newer config classes (old
flat field names are accepted, ``moved_fields``), so a config whose fields only moved counts as the same. A
loss history or score that differs is shown with its largest difference, weights by the tensors that
differ; the exit status is 1 when anything differs. ``run --only RUN ...`` runs some of the runs;
``--repeat`` runs each twice in one process and stops if the two differ (the machine's own determinism).
About a minute on one CPU thread.

The configurations are tiny but real: each model's ``recommended`` preset (before presets shipped in the
package, the repository's ``configs/`` file that held it: :data:`PRESET_FILES_BEFORE`) with network sizes,
epochs and diffusion chains cut by :data:`TINY`, or the config's defaults; the floors at their defaults.
Field names are the flat ones from before the config sections, which later versions read as well.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import cellsynth
from cellsynth.data.split import split_stations, split_users
from cellsynth.data.synthetic import synthesize_city
from cellsynth.generators import get

CITY = {"n_stations": 30, "n_users": 60, "seed": 0}
SEED = 0  # the split's, every model's and the generation's seed

# Sizes shrunk, epochs and chains cut; every other field stays the preset's (flat names, read by all versions).
_TINY_STOUTER = {
    "temporal_hidden_dim": 8,
    "temporal_embed_dim": 4,
    "station_hidden_dim": 8,
    "station_embed_dim": 4,
    "pretrain_epochs": 2,
    "pretrain_steps_per_epoch": 2,
    "channels": 8,
    "channel_mults": [1, 2],
    "context_dim": 8,
    "knn": 3,
    "epochs": 3,
    "batch_size": 8,
    "num_train_timesteps": 50,
    "beta_schedule": "squaredcos_cap_v2",  # the linear betas need ~1,000 steps to reach pure noise
    "sampling_steps": 5,
    "accelerator": "cpu",
}
_TINY_MSTDIFF = {
    "vq_codes": 16,
    "vq_dim": 4,
    "vq_hidden": 8,
    "vq_epochs": 2,
    "embedding_dim": 8,
    "tucker_epochs": 2,
    "knn": 4,
    "gaussian_steps": 20,
    "beta_schedule": "squaredcos_cap_v2",
    "discrete_steps": 10,
    "d_model": 16,
    "heads": 2,
    "layers_per_scale": 1,
    "full_res_layers": 1,
    "epochs": 3,
    "batch_size": 16,
    "calibration_users": 16,
    "accelerator": "cpu",
}
TINY = {
    "stouter": _TINY_STOUTER,
    "mstdiff": _TINY_MSTDIFF,
    "tcn-gan": {
        "hidden": 8,
        "critic_hidden": 8,
        "noise_dim": 4,
        "context_dim": 8,
        "dilations": [1, 4],
        "epochs": 3,
        "batch_size": 8,
        "n_critic": 2,
        "accelerator": "cpu",
    },
    "vae": {
        "hidden": 8,
        "latent_dim": 4,
        "context_dim": 8,
        "levels": 2,
        "epochs": 3,
        "batch_size": 8,
        "kl_anneal_epochs": 1.0,
        "accelerator": "cpu",
    },
    "diffwave": {
        "residual_channels": 8,
        "layers": 3,
        "dilation_cycle": 3,
        "step_dim": 8,
        "step_hidden": 16,
        "context_dim": 8,
        "epochs": 3,
        "batch_size": 8,
        "num_train_timesteps": 50,
        "beta_end": 0.2,
        "sampling_steps": 5,
        "accelerator": "cpu",
    },
}

# label -> (generator, base, overrides on top of TINY[generator]); base "recommended" or "defaults".
RUNS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "seasonal-mean": ("seasonal-mean", "defaults", {}),
    "copy-train": ("copy-train", "defaults", {}),
    "markov": ("markov", "defaults", {}),
    "stouter": ("stouter", "recommended", {}),
    "stouter, level_model none (Beijing's)": ("stouter", "recommended", {"level_model": "none"}),
    "tcn-gan": ("tcn-gan", "recommended", {}),
    "vae": ("vae", "recommended", {}),
    "diffwave": ("diffwave", "recommended", {}),
    "mstdiff": ("mstdiff", "recommended", {}),
    "mstdiff, defaults (the leaderboard's paper row)": ("mstdiff", "defaults", {}),
    "mstdiff, defaults, no trajectory": ("mstdiff", "defaults", {"trajectory": False}),
}

# Before presets shipped in the package (cellsynth.generators.presets), the recommended configs were files
# in the repository's configs/; the newer presets hold the same values (checked: the resolved configs match).
PRESET_FILES_BEFORE = {
    "stouter": "stouter.yaml",
    "tcn-gan": "tcn-gan.yaml",
    "vae": "vae.yaml",
    "diffwave": "diffwave.yaml",
    "mstdiff": "mstdiff-cpu-extended.yaml",
}
CALIBRATIONS = ("none", "zeros", "quantiles", "moments")


def sha256(*arrays) -> str:
    """SHA-256 over the arrays' dtypes, shapes and bytes (C order), in the order given."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def build(name: str, base: str, overrides: dict[str, Any]):
    """The unfitted generator of one run: ``base`` ("recommended" or "defaults") with TINY and overrides."""
    values = TINY.get(name, {}) | overrides
    if base == "defaults":
        return get(name, values)
    try:
        from cellsynth.generators.presets import available_presets
    except ImportError:  # a version before the shipped presets: the repository's configs/ held them
        path = Path(cellsynth.__file__).resolve().parents[2] / "configs" / PRESET_FILES_BEFORE[name]
        return get(name, (yaml.safe_load(path.read_text()) or {}) | values)
    if "recommended" not in available_presets(name):
        raise SystemExit(f"{name} ships no recommended preset in this version")
    return get(name, values, preset="recommended")


def weights_digest(gen) -> dict[str, str]:
    """SHA-256 of each tensor of the saved weights, by name."""
    from safetensors.numpy import load_file

    with tempfile.TemporaryDirectory() as tmp:
        gen.save(Path(tmp) / "model")
        weights = Path(tmp) / "model" / "weights.safetensors"
        tensors = load_file(weights) if weights.exists() else {}
    return {key: sha256(tensors[key]) for key in sorted(tensors)}


def _without_calibration(gen):
    """A shallow copy of a fitted MSTDiff that returns raw traffic (calibration mode "none")."""
    raw = copy.copy(gen)
    calibration = gen.config.calibration
    if hasattr(calibration, "model_copy"):  # the calibration section (after the sections)
        calibration = calibration.model_copy(update={"mode": "none"})
    else:  # a flat field
        calibration = "none"
    raw.config = gen.config.model_copy(update={"calibration": calibration})
    return raw


def _station_scores(real, synthetic, train) -> dict[str, float]:
    from cellsynth.evaluate import evaluate

    metrics = evaluate(real, synthetic, train=train).to_dict()["metrics"]
    return {
        f"{group}.{name}": entry["value"]
        for group, entries in sorted(metrics.items())
        if isinstance(entries, dict)
        for name, entry in sorted(entries.items())
        if isinstance(entry, dict) and isinstance(entry.get("value"), int | float)
    }


def _user_scores(real, synthetic) -> dict[str, float]:
    """The scores benchmarks/mstdiff.py reports (traffic and MoveSim's six trajectory JSDs)."""
    from cellsynth.metrics import daily_periodic_rmse, diff_jsd, log_value_jsd, trajectory_jsds, value_jsd

    scores = {}
    if synthetic.traffic is not None and real.traffic is not None:
        scores |= {
            "value_jsd": value_jsd(real.traffic, synthetic.traffic),
            "log_value_jsd": log_value_jsd(real.traffic, synthetic.traffic),
            "diff_jsd": diff_jsd(real.traffic, synthetic.traffic),
            "daily_rmse": daily_periodic_rmse(real.traffic, synthetic.traffic, 48, paired=False),
        }
    stations = real.stations
    scores |= trajectory_jsds(real.locations, synthetic.locations, stations.lat, stations.lon)
    return {k: float(v) for k, v in scores.items()}


def _folder(label: str) -> str:
    """A run's directory name under --save-models / --load-models."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _fitted(label: str, city, splits, load_from: Path | None):
    """The run's generator: fitted here (seeded), or loaded from ``load_from`` (saved by another version)."""
    name, base, overrides = RUNS[label]
    if load_from is not None:
        from cellsynth.generators import load

        return load(load_from / _folder(label))
    torch.manual_seed(SEED)
    gen = build(name, base, overrides)
    train = splits[gen.kind][0]
    extra = {"knowledge_graph": city.knowledge_graph} if name == "mstdiff" else {}
    with tempfile.TemporaryDirectory() as checkpoints:
        gen.fit(train, progress=False, checkpoint_dir=checkpoints, **extra)
    return gen


def run_one(label: str, city, splits, load_from: Path | None = None) -> tuple[dict[str, Any], Any]:
    """``(record, generator)`` of one run: see the module docstring for what the record holds."""
    name, base, _ = RUNS[label]
    started = time.perf_counter()
    gen = _fitted(label, city, splits, load_from)
    record: dict[str, Any] = {"generator": name, "base": base}
    train, held_out = splits[gen.kind]
    if gen.kind == "stations":
        outputs = {
            "held_out": gen.generate(held_out, samples=2, seed=SEED + 1),
            "train": gen.generate(train, samples=1, seed=SEED + 1),
        }
        record["generated"] = {key: sha256(out.values) for key, out in outputs.items()}
        record["scores"] = _station_scores(held_out, outputs["held_out"], train)
    else:
        calibrated = name == "mstdiff" and getattr(gen, "calibration_", None) is not None
        out = (_without_calibration(gen) if calibrated else gen).generate(held_out.n_users, seed=SEED + 1)
        record["generated"] = {"locations": sha256(out.locations)}
        record["scores"] = {}
        for mode in CALIBRATIONS if calibrated else (None,):
            traffic = out.traffic if mode is None else gen.calibrated(out.traffic, mode)
            key = "traffic" if mode is None else f"traffic, calibration {mode}"
            record["generated"][key] = sha256(traffic) if traffic is not None else None
            drawn = out if mode is None else replace(out, traffic=traffic)
            scored = _user_scores(held_out, drawn)
            record["scores"] |= {(k if mode is None else f"{k} ({mode})"): v for k, v in scored.items()}
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["config"] = gen.config.model_dump(mode="json")
    record["history"] = getattr(gen, "history_", None)
    record["weights"] = weights_digest(gen)
    return record, gen


def run(args) -> None:
    torch.set_num_threads(1)
    labels = args.only or list(RUNS)
    unknown = sorted(set(labels) - set(RUNS))
    if unknown:
        raise SystemExit(f"--only: unknown run(s) {unknown}; the runs are {list(RUNS)}")
    city = synthesize_city(**CITY)
    splits = {
        "stations": split_stations(city.traffic, 0.2, SEED),
        "users": split_users(city.users, 0.2, seed=SEED),
    }
    kg = city.knowledge_graph
    result: dict[str, Any] = {
        "cellsynth": getattr(cellsynth, "__version__", "?"),
        "source": str(Path(cellsynth.__file__).resolve().parent),
        "torch": torch.__version__,
        "city": {
            "traffic": sha256(city.traffic.values),
            "users": sha256(city.users.locations, city.users.traffic),
            "knowledge_graph": hashlib.sha256(
                "\n".join(map("\t".join, zip(kg.heads, kg.relations, kg.tails, strict=True))).encode()
            ).hexdigest(),
        },
        "runs": {},
    }
    for label in labels:
        print(f"{label} ...", file=sys.stderr, flush=True)
        record, gen = run_one(label, city, splits, args.load_models)
        if args.save_models:
            gen.save(args.save_models / _folder(label))
        if args.repeat and _differences(record, run_one(label, city, splits, args.load_models)[0], True):
            raise SystemExit(f"{label}: two runs in one process differ; the machine is not deterministic")
        result["runs"][label] = record
        print(f"  {record['seconds']} s", file=sys.stderr, flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


def _configs_match(name: str, old: dict, new: dict) -> bool:
    """Old config read by this version's config class (old names included) against the new one."""
    from cellsynth.generators import get_class

    return get_class(name)(old).config.model_dump(mode="json") == new


def _differences(old: dict, new: dict, same_version: bool = False) -> dict[str, str]:
    """What differs between two records of one run: part -> a short description."""
    found = {}
    if same_version:
        if old["config"] != new["config"]:
            found["config"] = "differs"
    elif not _configs_match(new["generator"], old["config"], new["config"]):
        found["config"] = "differs"
    if old["history"] != new["history"]:
        found["history"] = _largest_gap(_flatten(old["history"]), _flatten(new["history"]))
    if old["weights"] != new["weights"]:
        if sorted(old["weights"].values()) == sorted(new["weights"].values()):
            found["weights"] = "tensors renamed, values the same"
        else:
            keys = sorted(set(old["weights"]) | set(new["weights"]))
            differ = [k for k in keys if old["weights"].get(k) != new["weights"].get(k)]
            listed = ", ".join(f"`{k}`" for k in differ[:4]) + (" ..." if len(differ) > 4 else "")
            found["weights"] = f"{len(differ)} of {len(keys)} tensors differ: {listed}"
    for key in sorted(set(old["generated"]) | set(new["generated"])):
        if old["generated"].get(key) != new["generated"].get(key):
            found[f"generated {key}"] = "differs"
    if old["scores"] != new["scores"]:
        found["scores"] = _largest_gap(old["scores"], new["scores"])
    return found


def _flatten(value, prefix: str = "") -> dict[str, float]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flatten(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): value}


def _largest_gap(old: dict, new: dict) -> str:
    if set(old) != set(new):
        return f"entries differ ({sorted(set(old) ^ set(new))[:3]} ...)"
    gaps = {k: abs(float(new[k]) - float(old[k])) for k in old if old[k] != new[k]}
    worst = max(gaps, key=gaps.get)
    return f"{len(gaps)} of {len(old)} values differ, largest {worst}: {old[worst]!r} -> {new[worst]!r}"


def compare(args) -> None:
    old, new = (json.loads(Path(p).read_text()) for p in (args.old, args.new))
    print(f"old: {old['source']} (cellsynth {old['cellsynth']}, torch {old['torch']})")
    print(f"new: {new['source']} (cellsynth {new['cellsynth']}, torch {new['torch']})\n")
    city = [k for k in old["city"] if old["city"][k] != new["city"].get(k)]
    print(f"synthetic city: {'same arrays' if not city else 'differs: ' + ', '.join(city)}\n")
    print("| run | config | loss history | weights | generated arrays | scores |")
    print("|---|---|---|---|---|---|")
    identical = not city
    for label in old["runs"]:
        if label not in new["runs"]:
            print(f"| {label} | (not run in the new version) | | | | |")
            identical = False
            continue
        found = _differences(old["runs"][label], new["runs"][label])
        identical &= not found
        generated = [k for k in found if k.startswith("generated ")]
        cells = [
            found.get("config", "same"),
            found.get("history", "same"),
            found.get("weights", "same"),
            ("differ: " + ", ".join(k.removeprefix("generated ") for k in generated))
            if generated
            else "same",
            found.get("scores", "same"),
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nidentical" if identical else "\nNOT identical: see the rows above")
    if not identical:
        raise SystemExit(1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="Fit, generate and hash every run; write a JSON.")
    run_parser.add_argument("--out", required=True, help="JSON file to write.")
    run_parser.add_argument("--only", nargs="+", metavar="RUN", help=f"Some of the runs: {list(RUNS)}.")
    run_parser.add_argument(
        "--repeat", action="store_true", help="Run each twice and fail if they differ (determinism)."
    )
    run_parser.add_argument(
        "--save-models", type=Path, metavar="DIR", help="Also save each fitted model in DIR/<run>/."
    )
    run_parser.add_argument(
        "--load-models",
        type=Path,
        metavar="DIR",
        help="Generate from the models another version saved with --save-models instead of fitting: do "
        "saved models load and generate the same?",
    )
    compare_parser = commands.add_parser("compare", help="Compare two JSONs of `run` (newer version).")
    compare_parser.add_argument("old")
    compare_parser.add_argument("new")
    args = parser.parse_args(argv)
    run(args) if args.command == "run" else compare(args)


if __name__ == "__main__":
    main()
