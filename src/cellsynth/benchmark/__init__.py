"""The station-traffic benchmark: several generators, one split, one budget rule, several seeds; one dataset
(:func:`run_benchmark`) or a whole suite of datasets and protocols with one leaderboard (:func:`run_suite`).

    result = run_benchmark(traffic, ["seasonal-mean", "tcn-gan", "vae", "diffwave", "stouter"], seeds=3,
                           out="bench/")
    print(result.table)            # also in bench/table.md; every number in bench/results.json

    board = run_suite(read_suite("benchmarks/suites/stations-real.yaml"), out="bench/real", jobs=2)
    print(board.leaderboard)       # also in bench/real/leaderboard.md

Protocol (docs/report.md):

1. **One split.** By station (``protocol="stations"``, new sites): the stations are split once
   (:func:`cellsynth.data.split.split_stations`, ``split_seed``, ``test_fraction``); every model and seed
   trains on the same training stations. By time (``protocol="time"``, future weeks of known stations): every
   station's earlier whole weeks train and its last ``test_fraction`` of whole weeks are scored
   (:func:`cellsynth.data.split.split_weeks`).
2. **One budget rule** for all (``budget``):

   - ``"preset"`` — every model trains for the epochs of its config: the shipped preset ``preset``
     (``"recommended"`` by default, :mod:`cellsynth.generators.presets`) with ``configs[model]`` on top (the
     CLI passes ``--configs-dir``'s ``<model>.yaml``). The configs differ per model (docs/baselines.md says
     why); the measured training time is reported next to every score.
   - an integer ``n`` — every model with an ``epochs`` option trains for ``n`` epochs (passes over the
     training station-weeks); STOUTER's graph pretraining keeps its ``pretrain_epochs``; models without
     training (the reference generators) are unaffected.
   - with either, ``min_steps = m``: every model with ``epochs`` and ``batch_size`` trains for
     ``max(E, ceil(m / ceil(n_weeks / batch_size)))`` epochs (``n_weeks`` the training station-weeks), so
     that a small training set still gets ``m`` optimiser steps.

   The rule is stated in the table and in ``results.json``. (A wall-clock budget is not offered: it would
   make a run depend on the machine and on whatever else runs on it, and an interrupted run could not be
   resumed exactly.)
3. **Per seed** ``s``: the model is built with ``seed = s`` and generates ``samples`` weeks per station with
   ``seed = s``, for the held-out stations (the planned-site case) or the stations' later weeks, and, by
   station, for the training stations (all of them, a subset of ``train_stations`` drawn with
   ``split_seed``, or none for ``train_stations=0``). Cells run one at a time or ``jobs`` at a time, each
   in its own process (:mod:`~cellsynth.benchmark.cells`).
4. **Scores** come from :func:`cellsynth.evaluate.evaluate`, every channel, on the normalised scale
   (divided by the training maximum per channel): held-out = ``evaluate(held_out, generated, train=train)``;
   training stations = ``evaluate(all stations, generated for the training stations, train=train)`` (pairs
   the training stations; its memorisation check compares with the held-out stations' real weeks).
5. **Table** (``table.md``), laid out like STOUTER's Table 1: rows = models, columns = MAE, RMSE and value
   JSD per channel, mean ± standard deviation (``ddof = 1``) over seeds, the best mean of each column in
   bold, the second underlined; then STOUTER's relative change against the best baseline,
   ``(STOUTER - best) / best`` per column (negative = STOUTER lower = better). The baselines are the
   paper's (:data:`PAPER_BASELINES`) that were run, or every other model when none was. Then the other
   metrics, the memorisation check, training time and generation throughput (station-weeks per second).

**Resumable.** Each (model, seed) result is written to ``out/results/<model>__seed<s>.json`` as soon as it
is complete; each run directory ``out/runs/<model>/seed<s>/`` keeps the model's checkpoints and, once
trained, the saved model. Running the same benchmark again reuses finished results, loads trained models
instead of training them again, and resumes interrupted training from its last checkpoint. Settings that
would make old results incomparable (other data, protocol, split, samples or budget; another config for a model)
are refused with a :class:`~cellsynth.errors.ConfigError`: use a fresh ``out``.

Modules: :mod:`~cellsynth.benchmark.run` (one dataset under one protocol and its stored results),
:mod:`~cellsynth.benchmark.cells` (one (model, seed) cell; running cells in parallel),
:mod:`~cellsynth.benchmark.suite` (suite files), :mod:`~cellsynth.benchmark.leaderboard` (a whole suite and
its leaderboard), :mod:`~cellsynth.benchmark.table` (aggregation over seeds and the markdown).
"""

from cellsynth.benchmark.leaderboard import SuiteResult, run_suite
from cellsynth.benchmark.run import PROTOCOLS, BenchmarkResult, run_benchmark
from cellsynth.benchmark.suite import Suite, make_suite, read_suite
from cellsynth.benchmark.table import PAPER_BASELINES, format_cell, markdown_table

__all__ = [
    "PAPER_BASELINES",
    "PROTOCOLS",
    "BenchmarkResult",
    "Suite",
    "SuiteResult",
    "format_cell",
    "make_suite",
    "markdown_table",
    "read_suite",
    "run_benchmark",
    "run_suite",
]
