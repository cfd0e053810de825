"""Build a study's report from its exported runs (`results/<study>/runs.json` and `sweep.json`).

Outputs, under the report folder:
    metrics.json          variants.<v>: rank, n, the study metric's mean/std/95% CI, p vs best (DVC metrics)
    analysis.json         everything: per-seed values, every summarized metric, run ids, the answer
    summary.md            the question, the generated answer, and a table per variant
    curves/<variant>.csv  epoch, mean, std, n of the study metric over seeds (DVC plots)
    figures/*.png         learning curves with bands, final metric with CI, per-layer gradient norms,
                          metric vs cost (parameters, FLOPs, wall time) and the best classifier's
                          confusion matrix, when they apply; plus those of the study's sections
    tables/               the sections' long tables (empty when none)

The report builds from the files alone. The MLflow store is optional: when it is reachable the
figures and summary are also logged to the sweep's parent run, and the best run's model is
re-evaluated for the confusion matrix; when it is not, those steps are skipped with a warning.

One job per module: `analysis` (the numbers), `markdown` (the table and summary.md), `figures`,
`confusion`, `mlflow_log`, and `build` (`build_report`, which runs them and the study's sections from
`pipeline.sections`). The generic report knows no study.

This package file imports nothing, so a stage that needs one part (the index page reads only `markdown`) does
not load the rest: import the module you need, e.g. `from pipeline.report.build import build_report`.
"""
