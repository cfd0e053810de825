"""DVC stage `report@<name>`: statistics, tables and figures for one study from its exported runs."""

from pipeline.config import load_params, load_study
from pipeline.entry import ArgParser, exit_now, guarded, setup_logging
from pipeline.report.build import build_report


@guarded
def main(argv: list[str] | None = None) -> None:
    ap = ArgParser(description=__doc__)  # bad usage: one line, exit code 2
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--study", required=True, help="experiments/<study>.yaml")
    ap.add_argument("--results", required=True, help="the study stage's results folder")
    ap.add_argument("--data", default=None, help="prepared data folder (for sections that re-evaluate models)")
    ap.add_argument("--out", required=True, help="report folder")
    ap.add_argument("--no-mlflow", action="store_true", help="do not log the figures to the sweep's MLflow run")
    args = ap.parse_args(argv)
    setup_logging()
    study = load_study(args.study, load_params(args.params), args.params)
    out = build_report(study, args.results, args.out, args.data, log_to_mlflow=not args.no_mlflow)
    print(out["analysis"]["answer"])


if __name__ == "__main__":
    exit_now(main())
