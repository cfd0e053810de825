"""DVC stage `specs`: check every study in every profile, then write what decides each study's sweep.

The check includes each study's `report:` names: this stage runs before every study stage, so a typo there stops
`dvc repro` before a sweep, not after it in the report stage.

`specs/<study>.json` is `Study.fingerprint()`: the resolved spec in the active profile without the keys only the
report reads (question, claims, sections). The study stage depends on that file, not on the study's YAML or on
params.yaml, so an edit that changes no sweep (a claim, an inactive profile, a comment) re-runs none: DVC runs
this stage again, finds the same file, and stops there.
"""

import json
from pathlib import Path

from pipeline.config import load_params, load_study
from pipeline.entry import ArgParser, exit_now, guarded
from pipeline.preflight import preflight
from pipeline.sections import check_sections


@guarded
def main(argv: list[str] | None = None) -> None:
    ap = ArgParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--experiments", required=True, help="folder of <study>.yaml specs")
    ap.add_argument("--out", required=True, help="folder of <study>.json fingerprints")
    args = ap.parse_args(argv)
    preflight(args.params, args.experiments, services=False, check_report=check_sections)  # before a file is written
    params = load_params(args.params)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for name in params.studies:
        study = load_study(Path(args.experiments) / f"{name}.yaml", params, args.params)
        path = out / f"{name}.json"
        text = json.dumps(study.fingerprint(), indent=1, sort_keys=True) + "\n"
        if not path.is_file() or path.read_text() != text:
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(text)
            tmp.replace(path)
        wanted.add(path.name)
    for stale in out.glob("*.json"):  # a study no longer listed
        if stale.name not in wanted:
            stale.unlink()
    print(f"specs: {len(wanted)} studies checked in every profile ({', '.join(params.profiles)})")


if __name__ == "__main__":
    exit_now(main())
