"""DVC stage `index`: one self-contained HTML page with every study's report (site/index.html)."""

import os
from pathlib import Path

from pipeline.config import load_params
from pipeline.entry import ArgParser, exit_now, guarded
from pipeline.html import MLFLOW_UI_ENV, render_index


@guarded
def main(argv: list[str] | None = None) -> None:
    ap = ArgParser(description=__doc__)  # bad usage: one line, exit code 2
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--reports", required=True, help="folder of report folders, one per study (<reports>/<study>)")
    ap.add_argument("--out", required=True, help="the HTML page to write")
    ap.add_argument(
        "--mlflow-ui",
        default=None,
        help=f"MLflow UI base URL for the run links (default: ${MLFLOW_UI_ENV}, else http://127.0.0.1:5000)",
    )
    args = ap.parse_args(argv)
    params = load_params(args.params)
    # dvc.yaml lists each <reports>/<study> under this stage's deps (it cannot loop over params there);
    # render_index raises on a study whose report is missing, so a forgotten entry fails here, loudly.
    page = render_index([Path(args.reports) / s for s in params.studies], args.mlflow_ui)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Replaced whole: a failed or killed run leaves the last page, never half of one.
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page)
    os.replace(tmp, out)
    print(f"wrote {out} ({len(params.studies)} studies, {out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    exit_now(main())
