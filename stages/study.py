"""DVC stage `study@<name>`: run one study's sweep (Ray Tune + MLflow) and export its runs."""

import json
import os
from pathlib import Path

from pipeline.config import load_params, load_study
from pipeline.entry import ArgParser, exit_now, guarded
from pipeline.errors import ConfigError
from pipeline.jsonfile import read_json
from pipeline.preflight import preflight


@guarded
def main(argv: list[str] | None = None) -> None:
    ap = ArgParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--study", required=True, help="experiments/<study>.yaml")
    ap.add_argument("--data", required=True, help="prepared data folder")
    ap.add_argument("--out", required=True, help="results folder: runs.json, sweep.json")
    ap.add_argument("--spec", default=None, help="the specs stage's <study>.json this sweep must match (DVC's dep)")
    args = ap.parse_args(argv)
    # Before anything is touched: this study in every profile, and (unless `make repro`'s session already tried
    # them) the tracking store, the storage folder and the Ray address. DVC keeps this stage's outputs
    # (persist: true), so a refusal here loses nothing.
    spec = Path(args.study)
    preflight(args.params, spec.parent, [spec.stem], services=not os.environ.get("PIPELINE_PREFLIGHT_DONE"))
    # Only now torch, Ray and MLflow (3-4 s of imports): a refused study's stage ends in about a second.
    from pipeline.sweep import RETRAIN_ENV, run_study

    params = load_params(args.params)
    study = load_study(args.study, params, args.params)
    if args.spec is not None:  # the file DVC tracks for this stage must describe the sweep it runs
        written = read_json(args.spec, "run `dvc repro specs`")
        if written != json.loads(json.dumps(study.fingerprint())):
            raise ConfigError("out of date with the study and params.yaml; run `dvc repro specs`", file=args.spec)
    decide = None
    if study.sequential:  # the claims decide each look's seeds: the report's analysis of the runs so far
        from pipeline.report.build import look_decider

        decide = look_decider(study, args.data)
    summary = run_study(study, args.data, args.out, retrain=os.environ.get(RETRAIN_ENV) == "1", decide=decide)
    print(
        f"{study.name}: {summary['trials']} trials ({summary['trials_reused']} reused, {summary['trials_trained']} "
        f"trained) in {summary['looks']} look{'s' if summary['looks'] != 1 else ''}, {summary['errors']} errors, "
        f"{summary['wall_seconds']} s"
    )
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    exit_now(main())
