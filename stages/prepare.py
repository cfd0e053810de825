"""DVC stage `prepare`: write every data set the active profile's studies read into the prepared folder."""

from pathlib import Path

from pipeline.config import load_params, load_study
from pipeline.data import prepare
from pipeline.data.base import LoadContext
from pipeline.entry import ArgParser, exit_now, guarded
from pipeline.preflight import preflight


@guarded
def main(argv: list[str] | None = None) -> None:
    ap = ArgParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--experiments", required=True, help="folder of <study>.yaml specs")
    ap.add_argument("--out", required=True, help="prepared data folder")
    args = ap.parse_args(argv)
    # The specs stage checked every study in every profile before this one runs; a direct call checks them here.
    # DVC keeps the prepared folder (persist: true) and each data set is replaced atomically.
    preflight(args.params, args.experiments, services=False)
    params = load_params(args.params)
    wanted: dict[str, tuple[str, dict]] = {}
    for name in params.studies:
        study = load_study(Path(args.experiments) / f"{name}.yaml", params, args.params)
        base = study.resolve({}, study.seeds[0]).dataset
        wanted[repr((base.name, sorted(base.options.items())))] = (base.name, base.options)
    ctx = LoadContext(seed=params.seed, root=Path(params.data.root).resolve(), download=params.data.download)
    for name, options in wanted.values():
        path = prepare(name, options, ctx, args.out)
        print(f"prepared {name} -> {path}")


if __name__ == "__main__":
    exit_now(main())
