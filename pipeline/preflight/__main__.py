"""Check the whole resolved configuration before DVC or a sweep touches anything.

    python -m pipeline.preflight [--params params.yaml] [--experiments experiments] [--study NAME ...]
                                 [--no-services] [--timeout S]

Every study in every profile of params.yaml (see pipeline.preflight), its `report:` names against the report's
sections, and with services on the tracking store, the storage folder, the Ray address and one trial's resources.
The first problem is one line `error: FILE: KEY: MESSAGE` and exit code 2.

A module of its own because it imports the report's sections, which the DVC stages that run the preflight (every
study stage) must not depend on: a change to a section would re-run every sweep.
"""

from __future__ import annotations

import sys

from pipeline.config import load_params
from pipeline.entry import ArgParser, guarded
from pipeline.preflight import preflight
from pipeline.sections import check_sections


@guarded
def main(argv: list[str] | None = None) -> int:
    ap = ArgParser(prog="python -m pipeline.preflight", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--experiments", default="experiments", help="the folder of <study>.yaml files")
    ap.add_argument("--study", nargs="+", action="extend", help="only these studies (default: params.yaml's list)")
    ap.add_argument("--no-services", action="store_true", help="check the files only: no Ray, MLflow or storage")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds each service gets to answer")
    args = ap.parse_args(argv)
    preflight(
        args.params,
        args.experiments,
        args.study,
        services=not args.no_services,
        timeout_s=args.timeout,
        check_report=check_sections,
    )
    params = load_params(args.params)
    n = len(args.study) if args.study is not None else len(params.studies)
    skipped = " (services not checked)" if args.no_services else ""
    print(f"preflight ok: {n} studies, profiles {', '.join(params.profiles)}{skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
