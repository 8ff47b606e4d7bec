"""Compare generated data with real data by the evaluation protocol (DESIGN.md, "Evaluation protocol").

    evaluation = evaluate(real_held_out, generated, train=train)   # StationTraffic or UserMobility
    evaluation.to_json("metrics.json")                               # the numbers alone
    cellsynth.report.write_report(evaluation, "eval/")               # eval/metrics.json + eval/report.html

Every number comes from :mod:`cellsynth.metrics` (definitions in docs/metrics.md); this module only lines
the data up and says what it compared. Station traffic, step by step:

1. **Agreement.** Real, synthetic (and training) data must be station traffic with the same time step and
   the same channels (``channels=`` picks a subset); otherwise :class:`~cellsynth.errors.DataError` says
   what differs.
2. **Time.** Generated series are usually one week; real data may span several. The real series are cut
   into consecutive periods of the generated length ("weeks") and every real week is compared with the
   generated series; steps after the last whole week are left out, and the output says so.
3. **Scale.** Each channel is divided by its maximum over the training data (without training data: over
   the real data; the output says which). Every metric is scored on that normalised scale; the metrics that
   have units (the paired errors) are also reported in the data's original units.
4. **Pairing.** When every generated station id (``"<id>#<k>"`` with the sample suffix stripped) is a
   real station id, the data are aligned by id and each real week of a station is paired with all of that
   station's samples: MAE, RMSE (per sample and of the sample mean), coverage, band coverage and the paired
   daily-cycle RMSE, plus every distribution metric. Otherwise only distributions are compared (quantile-matched
   daily-cycle RMSE).
5. **Memorisation.** With training data, :func:`cellsynth.metrics.memorisation_check` compares each
   generated series (one week, all channels, normalised, flattened) with the training weeks and with the
   held-out real weeks (real stations that are not training stations; every real week when the real data
   starts after the training data ends, the future weeks of known stations).
6. **Utility** (:mod:`cellsynth.metrics.utility`). Paired: the busy-hour P95 dimensioning error and, with
   K >= 2 samples, the busy-hour coverage. With training data: the train-on-synthetic, test-on-real forecast
   utility, a fixed day-ahead forecaster fitted on the generated series and on the training series, both
   tested on the held-out real series of step 5.

User mobility (:func:`evaluate_users`): the six trajectory JSDs on the real stations table's coordinates
(without coordinates the four that need none), the traffic JSDs of values and first differences and the
daily-cycle RMSE when both sides have traffic (30-minute steps: 48 steps a day), and a memorisation check
on trajectories as sequences of station positions (km) when training users are given. Real users spanning
several weeks are cut into user-weeks as station traffic is.

Modules: :mod:`~cellsynth.evaluate.stations` (:func:`evaluate`), :mod:`~cellsynth.evaluate.users`
(:func:`evaluate_users`), :mod:`~cellsynth.evaluate.alignment` (agreement and time),
:mod:`~cellsynth.evaluate.scores` (metric by metric), :mod:`~cellsynth.evaluate.memorisation`,
:mod:`~cellsynth.evaluate.result` (:class:`Evaluation` and its JSON). What each metric means is :data:`cellsynth.metrics.catalog.METRICS`.
"""

from cellsynth.evaluate.memorisation import memorisation_verdict
from cellsynth.evaluate.result import Evaluation, StationComparison, UserComparison
from cellsynth.evaluate.stations import evaluate
from cellsynth.evaluate.users import evaluate_users
from cellsynth.metrics.catalog import METRICS, MetricInfo

__all__ = [
    "METRICS",
    "Evaluation",
    "MetricInfo",
    "StationComparison",
    "UserComparison",
    "evaluate",
    "evaluate_users",
    "memorisation_verdict",
]
