"""Where one `make repro` spends its time: epochs, each trial's fixed cost, each stage's, Ray's start, the reports.

analyse  read what a finished run left in PROJECT (no training): each study's `results/<study>/sweep.json` and
         `runs.json`, and its MLflow store (the runs' start and end, the timestamps of their metrics and of their
         logged model). A stage's wall is taken from its outputs' modification times (DVC runs one stage at a
         time, so a stage ends when its newest output is written, and what it does after that, its exit and DVC's
         lock, counts in the next one); that needs the pipeline's wall (`--wall`), and the first stage's time then
         holds whatever came before it. Stages whose outputs are older than that did not run.
run      clone the project's last commit (or, with --from worktree, copy the working tree) to a temporary folder,
         run what `make repro` runs after its install, `python -m pipeline.ray_session dvc repro` (with --plain:
         `dvc repro`), timestamp each line it prints (DVC's "Running stage '...'" lines start the stages), then
         analyse the clone with the stage walls so measured.

The headline is the training share: the summed `epoch_seconds` of every trial trained (the training steps; a
trial's validation, checkpoints and reports are not in it) / cores / the pipeline's wall.

  python benchmarks/repro_breakdown.py analyse --project . --wall 545      # the workspace's last make repro
  python benchmarks/repro_breakdown.py run --studies regression --profile tiny   # about a minute on 2 cores
  python benchmarks/repro_breakdown.py run                                 # the default pipeline, ~9 min
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from _common import print_load, print_machine, table
from pipeline_costs import copy_project, repro_env

# A trial's run, in the order its moments are logged (pipeline/trial.py): MLflow run start, the FLOP count (step 0),
# one `epoch_seconds` per epoch, the final metrics after the test evaluation, the logged model created and
# finalized, the run's end. Each segment is named by what ends it.
SEGMENTS = {
    "setup": "run start -> FLOP count logged (tags, params, data set, FLOP count)",
    "epochs": "epochs: the training steps (summed epoch_seconds)",
    "between": "between epochs: fit's setup, validation, diagnostics, checkpoints, Tune reports",
    "test": "last epoch -> final metrics (test evaluation of the best epoch)",
    "pre_model": "-> logged model created (tags, config.yaml, test_correct.npy, model copy, signature)",
    "model": "logged model (created -> finalized: pickle, requirements, upload)",
    "post_model": "-> run end (learning-curve PNG, end_run's flush)",
}


def stage_kind(name: str) -> str:
    return name.split("@")[0] + "@*" if "@" in name else name


@dataclass
class Segment:
    """A stretch of the pipeline's wall: one DVC stage, or the start before the first stage / the end after DVC."""

    name: str
    kind: str
    start: float  # seconds since the epoch, like MLflow's timestamps / 1000 and file times
    end: float

    @property
    def wall(self) -> float:
        return self.end - self.start


@dataclass
class Sweep:
    study: str
    summary: dict
    parent: tuple[float, float]  # the sweep's parent run: start, end
    trials: list[dict] = field(default_factory=list)  # trained by this sweep: see trial_times

    def slots(self) -> int:
        """How many trials ran at once at most (Tune's concurrent trial slots, as the runs show them)."""
        events = sorted([(t["start"], 1) for t in self.trials] + [(t["end"], -1) for t in self.trials])
        running = peak = 0
        for _, step in events:
            running += step
            peak = max(peak, running)
        return peak


def trial_times(client, run: dict) -> dict:
    """A trained trial's start, end, wall and epochs (seconds), its process and commit, and, where every moment was
    logged, the spans of SEGMENTS."""
    rid = run["run_id"]
    info = client.get_run(rid).info
    start, end = info.start_time / 1000, info.end_time / 1000
    epochs = client.get_metric_history(rid, "epoch_seconds")
    t = {"start": start, "end": end, "wall": end - start, "epochs": sum(m.value for m in epochs)}
    t |= {"pid": run["tags"].get("pid"), "commit": run["tags"].get("mlflow.source.git.commit", "?")[:7]}
    flops = client.get_metric_history(rid, "flops_per_sample")
    final = client.get_metric_history(rid, "best_epoch")
    model_id = run["tags"].get("best_model_id")
    if not (flops and epochs and final and model_id):
        return t  # stopped early, diverged or resumed: only wall and epochs
    model = client.get_logged_model(model_id)
    marks = [
        start,
        flops[0].timestamp / 1000,
        max(m.timestamp for m in epochs) / 1000,
        final[-1].timestamp / 1000,
        model.creation_timestamp / 1000,
        model.last_updated_timestamp / 1000,
        end,
    ]
    setup, fitting, test, pre_model, model_s, post_model = (b - a for a, b in zip(marks, marks[1:]))
    spans = {"setup": setup, "between": fitting - t["epochs"], "test": test, "pre_model": pre_model}
    return t | spans | {"model": model_s, "post_model": post_model}


def load_sweeps(project: Path) -> list[Sweep]:
    from mlflow.tracking import MlflowClient

    sweeps = []
    for study in yaml.safe_load((project / "params.yaml").read_text())["studies"]:
        folder = project / "results" / study
        if not (folder / "sweep.json").exists():
            continue
        summary = json.loads((folder / "sweep.json").read_text())
        client = MlflowClient(summary["tracking_uri"])
        parent = client.get_run(summary["parent_run_id"]).info
        sweep = Sweep(study, summary, (parent.start_time / 1000, parent.end_time / 1000))
        for run in json.loads((folder / "runs.json").read_text()):
            # A reused trial was trained by an earlier sweep: its times are that sweep's.
            if run["tags"].get("trained_under") == summary["parent_run_id"]:
                sweep.trials.append(trial_times(client, run))
        pids: set[str] = set()
        for t in sorted(sweep.trials, key=lambda t: t["start"]):
            t["first_in_process"] = t["pid"] not in pids
            pids.add(t["pid"])
        sweeps.append(sweep)
    return sweeps


def segments_from_outputs(project: Path, wall: float) -> list[Segment]:
    """The stages of the last run, each from the previous one's newest output to its own; the first one begins
    `wall` seconds before the last output and so also holds what came before it (Ray's start, DVC's, an install)."""
    from dvc.repo import Repo

    ends = {}
    with Repo(str(project)) as repo:
        for stage in repo.index.stages:
            paths = [Path(o.fs_path) for o in stage.outs]
            files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
            if files:
                ends[stage.addressing] = max(f.stat().st_mtime for f in files)
    begin = max(ends.values()) - wall
    segments = []
    for end, name in sorted((end, name) for name, end in ends.items() if end > begin):  # older: not run this time
        kind = stage_kind(name) if segments else f"start + {stage_kind(name)}"
        segments.append(Segment(name, kind, begin, end))
        begin = end
    return segments


def stats(xs: list[float]) -> list[float | str]:
    """median, p90, total"""
    if not xs:
        return ["", "", ""]
    p90 = statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]
    return [statistics.median(xs), p90, sum(xs)]


def print_stages(segments: list[Segment], wall: float) -> None:
    kinds: dict[str, list[float]] = {}
    for s in segments:
        kinds.setdefault(s.kind, []).append(s.wall)
    rows = [[k, len(v), sum(v), f"{100 * sum(v) / wall:.1f}%"] for k, v in kinds.items()]
    print(table(["stage kind", "count", "wall s", "of the pipeline"], rows + [["all", len(segments), wall, ""]]))


def print_sweeps(sweeps: list[Sweep], segments: list[Segment]) -> None:
    """Per study: its stage's wall split at its sweep's parent run and Tune's fit, and its trial slots' time."""
    stages = {s.name: s for s in segments}
    rows = []
    for s in sweeps:
        sweep_s = s.summary["wall_seconds"]
        runs_s = float(sum(t["wall"] for t in s.trials))
        stage = stages.get(f"study@{s.study}")
        split = [None] * 4
        if stage:  # process start, imports, preflight, Ray / reuse lookup, export / the process's exit, DVC's lock
            in_parent = s.parent[1] - s.parent[0] - sweep_s
            split = [stage.wall, s.parent[0] - stage.start, in_parent, stage.end - s.parent[1]]
        first = min((t["start"] for t in s.trials), default=s.parent[0]) - s.parent[0]
        epochs = float(sum(t["epochs"] for t in s.trials))
        outside = s.slots() * sweep_s - runs_s
        rows.append([s.study, len(s.trials), s.summary["trials"], *split, sweep_s, first, runs_s, epochs, outside])
    rows.append(["all", *(None if None in col else sum(col) for col in list(zip(*rows))[1:])])

    def cell(v):  # MLflow's times are whole milliseconds: -0.0 would print as "-0"
        return "" if v is None else round(v, 2) or 0.0 if isinstance(v, float) else v

    headers = ["study", "trained", "trials", "stage s", "before sweep s", "lookup + export s", "after s",
               "Tune sweep s", "sweep start -> 1st run s", "runs s (summed)", "epochs s", "slot-s outside runs",
               "... per trained trial"]  # fmt: skip
    print(table(headers, [[*map(cell, r), cell(r[-1] / r[1]) if r[1] else ""] for r in rows]))


def print_trials(trials: list[dict]) -> None:
    """Each SEGMENT of a trial's run, over all trials and split by the first run in its process (Tune's actor,
    which then pays its imports) and the runs after it in the same actor."""
    split = [t for t in trials if "setup" in t]
    first = [t for t in split if t["first_in_process"]]
    later = [t for t in split if not t["first_in_process"]]

    def row(label: str, value, pool: list[dict]) -> list:
        medians = [statistics.median(map(value, g)) if g else "" for g in (first, later)]
        return [label, *stats([value(t) for t in pool]), *medians]

    rows = [row("run wall (MLflow start -> end)", lambda t: t["wall"], trials)]
    rows += [row("fixed cost = run wall - epochs", lambda t: t["wall"] - t["epochs"], trials)]
    rows += [row(f"  {label}", lambda t, key=key: t[key], split) for key, label in SEGMENTS.items()]
    print(f"Per trial: {len(trials)} trained; segments of the {len(split)} with every moment logged, of which")
    print(f"{len(first)} were the first run in their process (Tune's actor) and {len(later)} ran after another:")
    headers = ["per trial", "median s", "p90 s", "total s", "median, 1st in process", "median, later"]
    print(table(headers, rows))


def print_share(sweeps: list[Sweep], segments: list[Segment], cores: int, wall: float | None) -> None:
    trials = [t for s in sweeps for t in s.trials]
    epochs = sum(t["epochs"] for t in trials)
    runs_s = sum(t["wall"] for t in trials)
    sweep_s = sum(s.summary["wall_seconds"] for s in sweeps)
    study_s = sum(s.wall for s in segments if s.kind.endswith("study@*"))

    def share(label: str, seconds: float, of: str) -> list[str]:
        return [label, f"{100 * epochs / seconds:.1f}%", of]

    rows = [["summed epoch seconds", epochs, f"{len(trials)} trials"]]
    if runs_s:  # not when every trial was reused
        rows.append(share("of the trial runs: epochs / summed run walls", runs_s, f"{runs_s:.1f} s"))
    rows.append(share("of the sweeps: epochs / cores / summed sweep walls", cores * sweep_s, f"{sweep_s:.1f} s"))
    if study_s:
        rows.append(share("of the study stages: epochs / cores / their walls", cores * study_s, f"{study_s:.1f} s"))
    if wall:
        rows.append(share("**training share: epochs / cores / pipeline wall**", cores * wall, f"{wall:.1f} s"))
    else:
        rows.append(["**training share: epochs / cores / pipeline wall**", "?", "no pipeline wall: pass --wall"])
    print(table(["training share", "value", "of"], rows))


def run(args: argparse.Namespace) -> tuple[Path, float, list[Segment]]:
    """A fresh copy of the project run end to end; returns its folder, its wall and its stages."""
    folder = Path(tempfile.mkdtemp(prefix="bench-breakdown-")) / "project"
    what = copy_project(folder, args.source)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    if args.studies:
        params["studies"] = args.studies.split(",")
    if args.profile:
        params["profile"] = args.profile
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cmd = ["dvc", "repro"] if args.plain else ["python", "-m", "pipeline.ray_session", "dvc", "repro"]
    print(f"{what} in {folder}; profile {params['profile']}; studies {params['studies']}; {' '.join(cmd)}", flush=True)
    env = repro_env(folder) | {"PYTHONUNBUFFERED": "1"}
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    starts: list[tuple[str, float]] = []
    dvc_done = None
    for line in proc.stdout:
        now = time.time()
        if line.startswith("Running stage '"):
            starts.append((line.split("'")[1], now))
            print(f"[{now - t0:7.1f}s] {line.rstrip()}", flush=True)
        elif line.startswith("Use `dvc push`"):  # DVC's last line: after it only its exit and Ray's shutdown
            dvc_done = now
    proc.wait()
    t1 = time.time()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}) in {folder}")
    dvc_done = dvc_done or t1
    starts.append(("end", dvc_done))
    start = "start (DVC)" if args.plain else "start (preflight, Ray session, DVC)"
    segments = [Segment("start", start, t0, starts[0][1])]
    segments += [Segment(name, stage_kind(name), s, e) for (name, s), (_, e) in zip(starts, starts[1:])]
    segments.append(Segment("end", "end (DVC's exit, Ray's shutdown)", dvc_done, t1))
    return folder, t1 - t0, segments


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", choices=["analyse", "run"], default="analyse")
    ap.add_argument("--project", type=Path, default=Path("."), help="analyse: the project folder of a finished run")
    ap.add_argument("--wall", type=float, default=None, help="analyse: the pipeline's measured wall (s)")
    ap.add_argument("--cores", type=int, default=os.cpu_count(), help="the training share's cores (default: all)")
    ap.add_argument("--studies", default=None, help="run: comma-separated studies instead of params.yaml's")
    ap.add_argument("--profile", default=None, help="run: the profile instead of params.yaml's (tiny: ~1 min)")
    ap.add_argument("--plain", action="store_true", help="run: plain `dvc repro`, each study stage starting Ray")
    ap.add_argument("--from", dest="source", choices=["head", "worktree"], default="head")
    args = ap.parse_args()
    print_machine()
    if args.mode == "run":
        project, wall, segments = run(args)
    else:
        project, wall = args.project.resolve(), args.wall
        segments = segments_from_outputs(project, wall) if wall else []
    sweeps = load_sweeps(project)
    if not sweeps:
        raise SystemExit(f"no results/<study>/sweep.json in {project} for the studies of its params.yaml")
    commits = ", ".join(sorted({t["commit"] for s in sweeps for t in s.trials})) or "none: every trial reused"
    walls = "DVC's output lines" if args.mode == "run" else "the outputs' times" if wall else "none (pass --wall)"
    print(f"# {project}: trials trained at commit {commits}; {args.cores} cores")
    print(f"# pipeline wall {f'{wall:.1f} s' if wall else '?'}; stage walls: {walls}\n")
    if segments:
        print_stages(segments, wall)
        print()
    print_sweeps(sweeps, segments)
    print()
    print_trials([t for s in sweeps for t in s.trials])
    print()
    print_share(sweeps, segments, args.cores, wall)
    print()
    print_load()


if __name__ == "__main__":
    main()
