"""Where a fitted MSTDiff's trajectories lose their structure: its denoiser on the forward process, and its
reverse chain step by step, on the synthetic city's held-out users (the split of benchmarks/mstdiff.py).

1. **Denoiser on forward-noised users.** For a few discrete steps ``s``, the held-out users' trajectories are
   corrupted with ``q(l_s | l_0)`` (and their traffic with the matching Gaussian step) and the denoiser
   predicts ``p_theta(l_0 | l_s)``: the share of corrupted tokens, the probability it gives the true station
   where the token was kept and where it was corrupted, its accuracy, and the stays per user of ``l_s`` and
   of the per-step argmax of the prediction, and the argmax's pass-throughs (below). A self-conditioned
   model (config ``extensions.self_condition``) predicts twice, the second time given its first prediction.
2. **The reverse chain** (Algorithm 2 with DDIM-K, at ``--temperature``): after each reverse step, the stays
   per user of the sampled ``l_{s'}``, beside the stays per user the forward process gives at the same
   ``s'`` (``q(l_{s'} | l_0)`` on the held-out users), the stays of the argmax of ``p_theta(l_0 | l_s)``,
   and the mean of its largest probability. A chain that matches the forward process has the forward
   column's stays at every step; where it has more, it has decided tokens that do not form stays. Also the
   pass-throughs per user (one-step stays ``a b c`` between two other stays,
   ``cellsynth.metrics.one_step_stays``) of ``l_{s'}`` and of the argmax: whether the chain's draws or
   the denoiser's own prediction put them there. ``--trajectory-substeps K`` runs the finer chain.
3. **Stay lengths**: stays per user in classes of length, held-out users against the chain's draws.

Both tables also give the share of 10:00-16:00 that users spend at their own most-visited station
(``cellsynth.metrics.time_at_top_location``; held-out users about 0.4, mostly at work then), for the
argmax of the prediction and, along the chain, for ``l_{s'}``: whether the denoiser keeps users at home.

A stay is a run of consecutive steps at one station (``cellsynth.metrics.mobility.stay_durations``).

    python benchmarks/mstdiff_chain.py --model bench/mstdiff-cpu/mstdiff/model
    python benchmarks/mstdiff_chain.py --model bench/mstdiff-cpu/mstdiff/model --temperature 0.5 --every 5
    python benchmarks/mstdiff_chain.py --model bench/cpu-8k/mstdiff-no-kg/model --trajectory-substeps 10 --every 50
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from cellsynth.data.split import split_users
from cellsynth.data.synthetic import synthesize_city
from cellsynth.generators import load
from cellsynth.generators.floors.markov import hour_keys
from cellsynth.generators.mstdiff.anchors import top_locations
from cellsynth.generators.mstdiff.generator import MSTDiffGenerator
from cellsynth.generators.mstdiff.sampler import gaussian_steps_of
from cellsynth.metrics.mobility import one_step_stays, stay_durations
from mstdiff import daytime_at_top  # this directory: benchmarks/mstdiff.py


def stays_per_user(locations: torch.Tensor | np.ndarray) -> float:
    locations = np.asarray(locations)
    return len(stay_durations(locations)) / len(locations)


def pass_throughs_per_user(locations: torch.Tensor | np.ndarray) -> float:
    return float(one_step_stays(np.asarray(locations))[1].mean())


def forward_sample(gen: MSTDiffGenerator, l0: torch.Tensor, s: float, rng: torch.Generator) -> torch.Tensor:
    """``l_s ~ q(l_s | l_0)`` at a step ``s`` that may lie between two integers (``GraphDiffusion.abar_at``)."""
    if float(s).is_integer():
        return gen.graph_.q_sample(l0, int(s), generator=rng)
    return gen.graph_.with_schedule(gen.graph_.abar_at([s])).q_sample(l0, 1, generator=rng)


def gaussian_step_for(s: int, gen: MSTDiffGenerator) -> int:
    """The first Gaussian step ``t`` with ``discrete_step(t) == s``: the noise level the two chains share."""
    return int(gaussian_steps_of(s, gen.config.discrete_steps, gen.config.gaussian_steps)[0])


@torch.no_grad()
def denoiser_table(
    gen: MSTDiffGenerator, locations: np.ndarray, traffic, hours: np.ndarray, steps: list[int], seed: int
) -> None:
    print(
        "\n### Denoiser on forward-noised held-out users (they spend "
        f"{daytime_at_top(locations, hours):.2f} of 10-16 h at their most-visited station)\n"
    )
    print(
        "| s | corrupted | P(true), kept | P(true), corrupted | accuracy | stays l_s | stays argmax "
        "| pass-throughs argmax | 10-16 h at top, argmax |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rng = torch.Generator().manual_seed(seed)
    l0 = torch.tensor(np.asarray(locations))
    x0 = torch.as_tensor(gen.wavelets_.transform(traffic)).float() if gen.traffic_ else None
    # A model with anchors denoises the held-out users given their own (what the chain draws for new users).
    anchors = None
    if gen.n_anchors:
        anchors = torch.from_numpy(top_locations(np.asarray(locations), gen.n_anchors))
    for s in steps:
        s_b = torch.full((len(l0),), s)
        t_b = torch.full((len(l0),), gaussian_step_for(s, gen))
        l_s = gen.graph_.q_sample(l0, s_b, generator=rng)
        x_t = None
        if x0 is not None:
            x_t = gen.gauss_.add_noise(x0, torch.randn(x0.shape, generator=rng), t_b)
        t_in = t_b if gen.traffic_ else None
        denoiser = gen.denoiser(anchors)
        _, logits = denoiser(x_t, l_s, t_in, s_b)
        if denoiser.self_condition:  # a second pass given the first one's prediction
            _, logits = denoiser(x_t, l_s, t_in, s_b)
        p = logits.softmax(-1)
        p_true = p.gather(-1, l0.unsqueeze(-1)).squeeze(-1)
        kept = l_s == l0
        corrupted = f"{float(p_true[~kept].mean()):.3f}" if (~kept).any() else "–"
        accuracy = float((p.argmax(-1) == l0).float().mean())
        print(
            f"| {s} | {1 - float(kept.float().mean()):.3f} | {float(p_true[kept].mean()):.3f} | {corrupted} "
            f"| {accuracy:.3f} | {stays_per_user(l_s):.1f} | {stays_per_user(p.argmax(-1)):.1f} "
            f"| {pass_throughs_per_user(p.argmax(-1)):.1f} | {daytime_at_top(p.argmax(-1), hours):.2f} |"
        )


@torch.no_grad()
def chain_table(gen: MSTDiffGenerator, locations: np.ndarray, hours: np.ndarray, args) -> None:
    rows = []

    def record(s, s_next, loc, logits):
        p = logits.softmax(-1)
        argmax = p.argmax(-1)
        rows.append(
            (
                s,
                s_next,
                stays_per_user(loc),
                stays_per_user(argmax),
                float(p.amax(-1).mean()),
                pass_throughs_per_user(loc),
                pass_throughs_per_user(argmax),
                daytime_at_top(loc, hours),
                daytime_at_top(argmax, hours),
            )
        )

    drawn = gen.generate(
        args.users_generated,
        seed=args.seed,
        sampler="ddim",
        steps=args.ddim_steps,
        temperature=args.temperature,
        trajectory_substeps=args.trajectory_substeps,
        trajectory_coupling=args.trajectory_coupling,
        on_trajectory_step=record,
    )
    rng = torch.Generator().manual_seed(args.seed)
    l0 = torch.tensor(np.asarray(locations))
    print(
        f"\n### Reverse chain (DDIM-{args.ddim_steps}, temperature {args.temperature}, "
        f"{args.trajectory_substeps} sub-step(s), coupling {args.trajectory_coupling}, "
        f"{args.users_generated} users; the held-out users make "
        f"{pass_throughs_per_user(l0):.1f} pass-throughs each)\n"
    )
    print(
        "| step | stays l_s' | stays, forward q(l_s' given l_0) | stays argmax p(l_0 given l_s) | mean max p "
        "| pass-throughs l_s' | pass-throughs argmax | 10-16 h at top, l_s' | 10-16 h at top, argmax |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, (s, s_next, stays, stays_argmax, max_p, through, through_argmax, top, top_argmax) in enumerate(
        rows
    ):
        if i % args.every and i != len(rows) - 1:
            continue
        forward = stays_per_user(l0 if s_next == 0 else forward_sample(gen, l0, s_next, rng))
        print(
            f"| {s:.4g} -> {s_next:.4g} | {stays:.1f} | {forward:.1f} | {stays_argmax:.1f} | {max_p:.3f} "
            f"| {through:.1f} | {through_argmax:.1f} | {top:.2f} | {top_argmax:.2f} |"
        )
    stay_length_table(np.asarray(locations), drawn.locations)


#: Edges of the stay-length classes of :func:`stay_length_table`, in steps: 1, 2, 3, 4-5, ..., 60 and more.
STAY_LENGTH_EDGES = [1, 2, 3, 4, 6, 9, 13, 19, 27, 40, 60]


def stay_length_table(real: np.ndarray, generated: np.ndarray) -> None:
    """Stays per user by length, held-out users against the chain's draws: which lengths the Duration JSD
    finds too many or too few of."""
    edges = [*STAY_LENGTH_EDGES, max(real.shape[1], generated.shape[1]) + 1]
    labels = [str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges[:-1])]
    labels.append(f"{edges[-2]}+")
    print("\n### Stays per user by length (steps)\n")
    print("| | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    for name, locations in (("held-out users", real), ("drawn users", generated)):
        counts, _ = np.histogram(stay_durations(locations), bins=edges)
        print(f"| {name} | " + " | ".join(f"{c / len(locations):.2f}" for c in counts) + " |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="A saved MSTDiff with trajectories (gen.save directory).")
    p.add_argument("--stations", type=int, default=150, help="As in benchmarks/mstdiff.py.")
    p.add_argument("--users", type=int, default=400, help="As in benchmarks/mstdiff.py.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ddim-steps", type=int, default=50)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--users-generated", type=int, default=80)
    p.add_argument(
        "--trajectory-substeps", type=int, default=1, help="Reverse steps per step of the plain chain."
    )
    p.add_argument(
        "--trajectory-coupling",
        type=float,
        default=0.0,
        help="Noise correlation between consecutive time steps' draws (0: Algorithm 2).",
    )
    p.add_argument("--every", type=int, default=3, help="Print every k-th reverse step (and the last).")
    p.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.01, 0.1, 0.25, 0.5, 0.6, 0.75, 0.9, 1.0],
        help="Discrete steps of the denoiser table, as fractions of S.",
    )
    args = p.parse_args(argv)
    gen = load(args.model)
    if gen.name != "mstdiff" or not gen.trajectory_:
        raise SystemExit(f"{args.model}: expected an MSTDiff with trajectories, got {gen.name}")
    city = synthesize_city(n_stations=args.stations, n_users=args.users, seed=args.seed)
    _, test = split_users(city.users, 0.2, seed=args.seed)
    if len(test.stations) != gen.graph_.n:
        raise SystemExit(
            f"{args.model} has {gen.graph_.n} stations, the city {len(test.stations)}: "
            "use the --stations/--users/--seed it was fitted with"
        )
    print(
        f"# {args.model}: {test.n_users} held-out users, real stays per user {stays_per_user(test.locations):.1f}"
    )
    s_max = gen.config.discrete_steps
    steps = sorted({max(1, min(s_max, round(f * s_max))) for f in args.fractions})
    hours = hour_keys(test.start, test.step, test.n_steps, weekly=False)
    denoiser_table(gen, test.locations, test.traffic, hours, steps, args.seed)
    chain_table(gen, test.locations, hours, args)


if __name__ == "__main__":
    main()
