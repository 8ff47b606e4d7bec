"""How a week's hours are shaped: real held-out stations against generated ones, by level tercile.

For every station-week ``x`` (normalised by the channel's training maximum, as the leaderboard scores) and
its mean day ``m`` (each hour of the day averaged over the 7 days)::

    step  = mean |x_{t+1} - x_t|                 (what the first-difference JSD sees)
    swing = sd_h m_h                             (the daily pattern's size)
    rest  = sd_t (x_t - m_{t mod 24})            (how far the days stray from their mean day)

averaged over the weeks of each third of the stations, ranked by their own mean (a generated week by its
generated level: the level prior does not predict a site's level, so the real station's tercile would mix
generated levels). A real week repeats its day: ``rest`` well below ``swing``.

    python benchmarks/week_shape.py --data bench/nanjing-users --runs bench/stations-real/nanjing-users/stations/runs/stouter/seed0

``--data`` is an imported dataset (``cellsynth data import``); the split is the leaderboard's (new sites:
``split_stations`` with ``--test-fraction`` and ``--split-seed``), and each run (a saved model directory)
draws ``--samples`` weeks for each held-out station; the first week of each is described. Prints a markdown table; used in
docs/notebook/2026-12-05-stouter-day-attention.md.
"""

from __future__ import annotations

import argparse

import numpy as np

DAYS = 7


def week_shape(weeks: np.ndarray) -> dict[str, np.ndarray]:
    """``step``, ``swing`` and ``rest`` (module docstring) of each week of ``weeks`` ``[S, L]``, ``L`` a whole
    number of days: each ``[S]``. The mean day repeated over the week is STOUTER's own projection
    (:func:`~cellsynth.generators.stouter.levels.daily_part`); its sd over the week is the mean day's."""
    from cellsynth.generators.stouter.levels import daily_part

    weeks = np.asarray(weeks, dtype=np.float64)
    if weeks.shape[1] % DAYS:
        raise ValueError(f"a week of {weeks.shape[1]} steps is not {DAYS} whole days")
    mean_day = daily_part(weeks[..., None], DAYS)[..., 0]
    return {
        "step": np.abs(np.diff(weeks, axis=1)).mean(1),
        "swing": mean_day.std(1),
        "rest": (weeks - mean_day).std(1),
    }


def by_tercile(weeks: np.ndarray) -> list[dict[str, float]]:
    """For each third of ``weeks`` ``[S, L]`` ranked by their mean (quietest first): the mean level and the
    mean ``step``, ``swing`` and ``rest``."""
    shape, level = week_shape(weeks), np.asarray(weeks).mean(1)
    return [
        {"level": float(level[part].mean())} | {k: float(v[part].mean()) for k, v in shape.items()}
        for part in np.array_split(np.argsort(level, kind="stable"), 3)
    ]


def table(rows: dict[str, list[dict[str, float]]]) -> str:
    head = (
        "| weeks | "
        + " | ".join(f"{t} level | step | swing | rest" for t in ("quiet", "middle", "busy"))
        + " |"
    )
    lines = [head, "| --- |" + " ---: |" * 12]
    for name, terciles in rows.items():
        cells = [f"{t[k]:.4f}" for t in terciles for k in ("level", "step", "swing", "rest")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, float]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="An imported dataset directory.")
    parser.add_argument("--runs", nargs="*", default=[], help="Saved model directories to draw from.")
    parser.add_argument("--channel", default=None, help="Channel name (default: the first).")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from cellsynth.data import read
    from cellsynth.data.split import split_stations
    from cellsynth.generators import load
    from cellsynth.generators.base import week_length

    torch.set_num_threads(1)
    data = read(args.data)
    if args.channel is not None and args.channel not in data.channels:
        parser.error(f"--channel {args.channel!r}: {args.data} has {', '.join(data.channels)}")
    channel = data.channels.index(args.channel) if args.channel else 0
    train, held_out = split_stations(data, args.test_fraction, args.split_seed)
    scale = float(train.values[..., channel].max())
    length = week_length(data, "week_shape.py")  # the first week of each station is described
    rows = {"real": by_tercile(held_out.values[:, :length, channel] / scale)}
    for run in args.runs:
        generated = load(run).generate(held_out.stations, samples=args.samples, seed=args.seed)
        rows[run] = by_tercile(generated.values[:, :length, channel] / scale)
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
