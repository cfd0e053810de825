"""Build a study's report from its exported runs (`results/<study>/runs.json` and `sweep.json`).

Outputs, under the report folder:
    metrics.json          a handful of flat numbers for DVC: best_<headline metric>, margin_to_runner_up,
                          significant_pairs, claims_confirmed, claims_total, runs, runs_failed
    analysis.json         everything: per-seed values and in-range intervals, validity checks, every tested pair,
                          chance levels, time to target, the claims' verdicts, P(A > B), the answer
    summary.md            the question, the generated answer, the claims table, and a table per variant
    curves/<variant>.csv  epoch, mean, std, n of the study metric over seeds (DVC plots)
    figures/*.png         validation learning curves with bands, the headline metric with its interval, per-layer
                          gradient norms, the headline metric vs cost (parameters, FLOPs, wall time) and the best
                          classifier's confusion matrix, when they apply; plus those of the study's sections
    tables/               the sections' long tables (empty when none)

The headline metric is the test score of each run's best-validation checkpoint (docs/statistics.md, section 8).
The report builds from the files alone. The MLflow store is optional: when it is reachable the figures and
summary are also logged to the sweep's parent run, the best run's model is re-evaluated for the confusion matrix,
and per-example test correctness gives P(A > B); when it is not, those steps are skipped with a reason.

One job per module: `analysis` (the numbers and the answer), `chance` (trivial predictors' scores), `claims` (the
spec's claims and their verdicts), `superiority` (P(A > B) from per-example artifacts), `markdown` (the tables and
summary.md), `figures`, `confusion`, `mlflow_log`, and `build` (`build_report`, which runs them and the study's
sections from `pipeline.sections`). The generic report knows no study.

This package file imports nothing, so a stage that needs one part (the index page reads only `markdown`) does
not load the rest: import the module you need, e.g. `from pipeline.report.build import build_report`.
"""
