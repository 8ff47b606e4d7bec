"""Sampling speed of every generator side by side, against the machine's own GEMM rate, in one run.

What it measures (one process; each measurement time-boxed):

- the GEMM rate: ``torch.matmul`` of two 2048 x 2048 matrices (float32, and float64, which the discrete
  diffusion computes in), on the device, in this same run: the physical limit the rates below sit under;
- station generators: station-weeks per second at 1,000 and 10,000 stations of a Milan-size synthetic city
  (``CityConfig.milan``): STOUTER (DPM-Solver++ 20 steps, in float32 and with the network in bfloat16, and
  DDIM 50), the baselines VAE, TCN-GAN, DiffWave (DDIM 50, float32 and bfloat16), and the seasonal-mean floor;
- MSTDiff: users per second at 2,000 users, for the demo's pretrained model (recommended preset, 150
  stations; its denoiser in float32 and in bfloat16) and for an untrained model of the same architecture
  over 4,000 stations;
- with ``--workers W [W ...]``, the same through the local engine (``generate_dataset`` in chunks of at most
  512, written to a temporary directory) with ``W`` chunks at a time in threads that share torch's threads
  (cellsynth.generation.chunks); chunks of ``ceil(size / W)`` when that is smaller, so each worker has one;
- streaming at the largest station size (issue 26): ``cellsynth generate`` of 4 samples per station of the
  seasonal mean in chunks, and ``cellsynth evaluate`` of that output, each in a child process whose own peak
  RSS is reported (``--no-streaming`` leaves them out);
- peak memory: the process's peak RSS after each measurement (``resource``; a running maximum over the
  whole run, so it grows with the largest item so far) and, on CUDA, ``torch.cuda.max_memory_allocated``
  of each measurement alone.

Each model is fitted with the architecture of its ``recommended`` preset and a training budget of one
epoch (``--quick``: its ``smoke_config``, which is also smaller): sampling costs the same whatever the
training length, since it runs the same network the same number of times. Station models train on 200
stations of the city and sample for the first 1,000 and all 10,000 (new sites get their features'
conditioning). Each rate is also given as GEMM-equivalents: seconds per unit times the float32 GEMM rate,
the FLOPs a machine doing nothing but GEMMs would do in that time.

A measurement's sizes run smallest first; a larger size is skipped, with a note, when the smaller one's
time scaled up would pass ``--max-seconds``.

    python benchmarks/speed.py --device cpu --out out/speed         # full size (long on CPU)
    python benchmarks/speed.py --device cuda --out $OUT/speed       # a GPU machine, about 3 minutes
    python benchmarks/speed.py --quick --out /tmp/speed             # tiny sizes, a smoke run

Writes ``DIR/results.json`` and ``DIR/results.md`` (the table).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

STATION_MODELS = {  # name -> sampler variants (label, generate options)
    "stouter": [
        ("dpm-solver-20", {"sampler": "dpm-solver", "steps": 20}),
        ("dpm-solver-20 bfloat16", {"sampler": "dpm-solver", "steps": 20, "precision": "bfloat16"}),
        ("ddim-50", {"sampler": "ddim", "steps": 50}),
    ],
    "vae": [("-", {})],
    "tcn-gan": [("-", {})],
    "diffwave": [
        ("ddim-50", {"sampler": "ddim", "steps": 50}),
        ("ddim-50 bfloat16", {"sampler": "ddim", "steps": 50, "precision": "bfloat16"}),
    ],
    "seasonal-mean": [("-", {})],
}
#: one epoch of everything, the rest of the recommended preset (architecture) unchanged
BUDGET = {
    "stouter": {"epochs": 1, "pretrain_epochs": 1, "pretrain_steps_per_epoch": 1},
    "vae": {"epochs": 1, "kl_anneal_epochs": 1.0},
    "tcn-gan": {"epochs": 1},
    "diffwave": {"epochs": 1},
    "seasonal-mean": {},
    "mstdiff": {"epochs": 1, "vq_epochs": 1, "tucker_epochs": 1},
}
FULL = {"stations": (1_000, 10_000), "train_stations": 200, "users": (64, 256, 2_000), "big_stations": 4_000}
QUICK = {"stations": (10, 30), "train_stations": 12, "users": (2, 4), "big_stations": 40}


def gemm_rate(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 1.0) -> float:
    """FLOP/s of ``a @ b`` for ``n x n`` matrices on ``device`` (``2 n^3`` FLOPs each), over about ``seconds``."""
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    a @ b
    _sync(device)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
        _sync(device)
    return 2 * n**3 * runs / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def ladder(sizes, run: Callable[[int], None], device, max_seconds: float, log=None) -> list[dict]:
    """``run(size)`` for each size, smallest first, timed; a size whose time, scaled from the last one
    measured, would pass ``max_seconds`` is skipped with a note (and so are the larger ones); on CUDA an
    untimed run of the smallest size comes first. Each row also
    goes to ``log`` as it comes, so that a run stopped early has printed what it measured."""
    rows, last = [], None
    if device.type == "cuda":  # kernel selection and the allocator's first growth, not timed
        run(sizes[0])
    for size in sizes:
        if last is not None:
            estimate = last[1] * size / last[0]
            if estimate > max_seconds:
                rows.append(
                    {"size": size, "skipped": f"about {estimate:.0f} s from {last[0]} in {last[1]:.1f} s"}
                )
                continue
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        started = time.perf_counter()
        run(size)
        _sync(device)
        seconds = time.perf_counter() - started
        row = {
            "size": size,
            "seconds": round(seconds, 3),
            "per_second": size / seconds,
            "peak_rss_mb": round(_peak_rss_mb()),
        }
        if device.type == "cuda":
            row["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
        rows.append(row)
        if log is not None:
            log(json.dumps(row))
        last = (size, seconds)
    return rows


def _config(name: str, quick: bool, device: torch.device, **extra) -> tuple[dict, str | None]:
    from cellsynth.generators.presets import available_presets
    from cellsynth.generators.registry import get_class

    accelerator = "gpu" if device.type == "cuda" else "cpu"
    if quick:
        config = get_class(name).smoke_config() | extra
        preset = None
    else:  # the floors have no presets: nothing to train but their statistics
        config = BUDGET[name] | extra
        preset = "recommended" if "recommended" in available_presets(name) else None
    fields = get_class(name).Config.model_fields
    if "accelerator" in fields:
        config["accelerator"] = accelerator
    return config, preset


def in_chunks(model, kind: str, target, workers: int, options: dict) -> None:
    """Generate ``target`` (stations, or a number of users) through the local engine with ``workers`` chunks at
    a time, into a temporary directory; chunks of at most the default 512, fewer when every worker would not
    otherwise get one."""
    from cellsynth.generation import DEFAULT_BATCH, ChunkPlan, generate_dataset

    size = len(target) if kind == "stations" else int(target)
    plan = ChunkPlan(kind, target, batch=min(DEFAULT_BATCH, -(-size // workers)), options=options)
    with tempfile.TemporaryDirectory(prefix="cellsynth-speed-") as scratch:
        generate_dataset(model, plan, Path(scratch) / "out", workers=workers)


def _with_workers(label: str, workers: int | None) -> str:
    return label if workers is None else f"{label}, {workers} worker{'s' if workers > 1 else ''} (chunks)"


def station_rows(sizes: dict, models, device, max_seconds: float, quick: bool, log, workers=()) -> list[dict]:
    from cellsynth.data.synthetic import CityConfig, synthesize_city
    from cellsynth.generators import get

    n_city = max(sizes["stations"])
    city_config = CityConfig.milan(n_stations=n_city, n_users=2, weeks=2)
    if quick:
        city_config = CityConfig(n_stations=n_city, n_users=2, weeks=2)
    city = synthesize_city(city_config)
    pick = np.sort(np.random.default_rng(0).choice(n_city, sizes["train_stations"], replace=False))
    train = city.traffic.select_stations(pick)
    rows = []
    for name in models:
        config, preset = _config(name, quick, device)
        started = time.perf_counter()
        model = get(name, config, preset=preset).fit(train, progress=False)
        fit_seconds = time.perf_counter() - started
        for (label, options), w in [(v, w) for v in STATION_MODELS[name] for w in (None, *workers)]:
            log(f"{name} {_with_workers(label, w)}")

            def run(size, model=model, options=options, w=w):
                target = city.stations.subset(np.arange(size))
                if w is None:
                    model.generate(target, samples=1, seed=0, **options)
                else:
                    in_chunks(model, "stations", target, w, options)

            for row in ladder(sizes["stations"], run, device, max_seconds, log):
                rows.append(
                    {
                        "kind": "stations",
                        "model": name,
                        "sampler": _with_workers(label, w),
                        "unit": "station-weeks",
                        "fit_seconds": round(fit_seconds, 1),
                        **row,
                    }
                )
    return rows


#: Runs its arguments as a command and prints the command's peak RSS (kB). A process spawned from this one
#: would report at least this process's own peak (Linux keeps the pre-exec peak across fork and exec), so
#: the measured command is the child of this small interpreter instead.
_MEASURE = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def _child_run(args: list[str]) -> tuple[float, float]:
    """``(seconds, peak RSS in MB)`` of ``python -m cellsynth.cli ARGS`` in a process of its own, so that its
    peak is its own and not this process's running maximum."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, sys.executable, "-m", "cellsynth.cli", *args],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cellsynth {' '.join(args)} exited with {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - started, int(done.stdout.split()[-1]) / 1024  # kB on Linux


def streaming_rows(sizes: dict, log) -> list[dict]:
    """Issue 26's streaming sizes through the CLI, each command in a child process: ``generate`` of
    ``sizes["stations"][-1]`` stations x 4 samples of the seasonal mean (chunks of 512, the default) and
    ``evaluate`` of that output against the city's two weeks; seconds and each child's peak RSS."""
    import tempfile

    from cellsynth.data.synthetic import CityConfig, synthesize_city

    n = max(sizes["stations"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        city = Path(tmp) / "city"
        synthesize_city(CityConfig.milan(n_stations=n, n_users=2, weeks=2)).write(city)
        commands = [
            (
                "fit",
                ["fit", "seasonal-mean", "--data", f"{city}/traffic", "--out", f"{tmp}/run", "--no-progress"],
            ),
            (
                "generate (CLI, seasonal-mean, 4 samples, chunks of 512)",
                [
                    "generate",
                    "--model",
                    f"{tmp}/run",
                    "--data",
                    f"{city}/traffic",
                    "--samples",
                    "4",
                    "--out",
                    f"{tmp}/gen",
                ],
            ),
            (
                "evaluate (CLI, against 2 real weeks)",
                [
                    "evaluate",
                    "--real",
                    f"{city}/traffic",
                    "--synthetic",
                    f"{tmp}/gen",
                    "--train",
                    f"{city}/traffic",
                    "--out",
                    f"{tmp}/eval",
                ],
            ),
        ]
        for label, args in commands:
            seconds, peak = _child_run(args)
            if label == "fit":
                continue
            row = {
                "kind": "streaming",
                "model": label,
                "sampler": "-",
                "unit": "station-weeks",
                "size": 4 * n,
                "seconds": round(seconds, 3),
                "per_second": 4 * n / seconds,
                "peak_rss_mb": round(peak),
            }
            log(json.dumps(row))
            rows.append(row)
    return rows


def user_rows(
    sizes: dict,
    device,
    max_seconds: float,
    quick: bool,
    log,
    pretrained: bool = True,
    big: bool = True,
    workers=(),
) -> list[dict]:
    from cellsynth.data.synthetic import CityConfig, synthesize_city
    from cellsynth.demo import pretrained_user_model
    from cellsynth.generators import get

    rows = []
    if pretrained:
        demo = pretrained_user_model()
        for precision, w in [(p, w) for p in ("float32", "bfloat16") for w in (None, *workers)]:
            label = "" if precision == "float32" else ", denoiser in bfloat16"
            label = _with_workers(f"pretrained demo model, 150 stations{label}", w)
            log(f"mstdiff {label}")

            def run(k, p=precision, w=w):
                if w is None:
                    demo.generate(k, seed=0, device=device, precision=p)
                else:
                    in_chunks(demo, "users", k, w, {"device": device, "precision": p})

            for row in ladder(sizes["users"], run, device, max_seconds, log):
                rows.append({"kind": "users", "model": "mstdiff", "sampler": label, "unit": "users", **row})

    if not big:
        return rows
    n = sizes["big_stations"]
    city = synthesize_city(
        CityConfig.milan(n_stations=n, n_users=32, weeks=1, user_weeks=1)
        if not quick
        else CityConfig(n_stations=n, n_users=16, weeks=1)
    )
    # no post-fit draws: the sampler selection alone would draw 6 x 256 users of the 4,000-station chain
    config, preset = _config(
        "mstdiff", quick, device, calibration={"mode": "none"}, sampler_selection={"candidates": []}
    )
    started = time.perf_counter()
    untrained = get("mstdiff", config, preset=preset).fit(city.users, progress=False)
    fit_seconds = time.perf_counter() - started
    log(f"mstdiff untrained, {n} stations")
    what = "smoke config" if quick else "same architecture"
    for row in ladder(
        sizes["users"], lambda k: untrained.generate(k, seed=0, device=device), device, max_seconds, log
    ):
        rows.append(
            {
                "kind": "users",
                "model": "mstdiff",
                "sampler": f"{what}, untrained, {n} stations",
                "unit": "users",
                "fit_seconds": round(fit_seconds, 1),
                **row,
            }
        )
    return rows


def run(
    *,
    device: str = "cpu",
    quick: bool = False,
    max_seconds: float = 60.0,
    models=tuple(STATION_MODELS),
    users: bool = True,
    pretrained: bool = True,
    big_stations: bool = True,
    streaming: bool = False,
    workers=(),
    log=print,
) -> dict:
    """Everything measured, as the JSON ``results.json`` holds."""
    device = torch.device(device)
    sizes = QUICK if quick else FULL
    gemm32 = gemm_rate(device, torch.float32, 256 if quick else 2048, 0.2 if quick else 1.0)
    gemm64 = gemm_rate(device, torch.float64, 256 if quick else 2048, 0.2 if quick else 1.0)
    log(f"GEMM: {gemm32 / 1e9:.1f} GFLOP/s float32, {gemm64 / 1e9:.1f} float64")
    rows = station_rows(sizes, models, device, max_seconds, quick, log, workers)
    if users:
        rows += user_rows(sizes, device, max_seconds, quick, log, pretrained, big_stations, workers)
    if streaming:
        rows += streaming_rows(sizes, log)
    for row in rows:
        if "per_second" in row:
            row["gemm_gflop_per_unit"] = gemm32 / row["per_second"] / 1e9
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "quick": quick,
        "max_seconds": max_seconds,
        "gemm_flops": {"float32": gemm32, "float64": gemm64},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }


def markdown(results: dict) -> str:
    gemm = results["gemm_flops"]
    lines = [
        f"Device {results['device']} ({results['device_name']}), {results['threads']} threads, torch {results['torch']}, "
        f"{results['date']}. GEMM (2048 x 2048): {gemm['float32'] / 1e9:.1f} GFLOP/s float32, "
        f"{gemm['float64'] / 1e9:.1f} GFLOP/s float64.",
        "",
        "| model | sampler | size | seconds | per second | GEMM-GFLOP per unit | peak RSS MB | CUDA peak MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["rows"]:
        size = f"{r['size']:,} {r['unit']}"
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['sampler']} | {size} | skipped: {r['skipped']} | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['sampler']} | {size} | {r['seconds']:.2f} | {r['per_second']:,.1f} | "
            f"{r['gemm_gflop_per_unit']:.2f} | {r['peak_rss_mb']:,} | {r.get('cuda_peak_mb', '-')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="Tiny sizes and smoke configs: a smoke run.")
    parser.add_argument("--out", default="out/speed", help="Directory for results.json and results.md.")
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="Skip a size whose estimate passes this."
    )
    parser.add_argument("--models", nargs="*", default=list(STATION_MODELS), choices=list(STATION_MODELS))
    parser.add_argument("--no-users", action="store_true", help="Station generators only.")
    parser.add_argument(
        "--no-big-stations",
        action="store_true",
        help="Leave out the untrained MSTDiff over 4,000 stations (about 15 minutes for its 64 users on 2 CPU cores).",
    )
    parser.add_argument(
        "--no-streaming",
        action="store_true",
        help="Leave out generate and evaluate through the CLI at the largest station size (each in a child "
        "process, its own peak memory).",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[],
        help="Also measure each through the local engine with this many chunks at a time (CPU only), e.g. 1 2.",
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    if args.device == "cuda" and args.workers:
        parser.error("--workers runs chunks in threads on the CPU: leave it out with --device cuda")
    if any(w < 1 for w in args.workers):
        parser.error("--workers: give positive numbers")
    results = run(
        device=args.device,
        quick=args.quick,
        max_seconds=args.max_seconds,
        models=args.models,
        users=not args.no_users,
        big_stations=not args.no_big_stations,
        streaming=not args.no_streaming,
        workers=tuple(args.workers),
        log=lambda m: print(m, flush=True),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
