"""The preflight's look at a Ray cluster, in a process of its own:

    python -m pipeline.ray_probe '{"address": ..., "token": ..., "tracking": {...}, "storage": ..., ...}'

Its own process, because `ray.init` on a wrong address waits far longer than any timeout, and a connected driver
would outlive the preflight's answer: the preflight gives it a deadline and kills its process group. It prints
CONNECTED once `ray.init` returns, then one line RESULT + JSON: the cluster's CPU and GPU totals, its largest node's,
and per alive node what that node itself (not the driver) found: whether the tracking store and the storage folder
are the driver's (it finds the token file the driver left there), opens them, and writes there.

It imports nothing of this project, only Ray and the standard library: run as `-m`, this module is `__main__`, so Ray
pickles `probe` by value and a node needs no copy of the project to run it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

CONNECTED = "PREFLIGHT-CONNECTED"
RESULT = "PREFLIGHT "


def probe(a: dict[str, Any], node_id: str) -> dict[str, str | None]:
    """On one node: why it cannot use the tracking store and the storage folder (None: it can)."""
    import os
    import sqlite3
    import urllib.request
    from pathlib import Path

    def sees_token(folder: str) -> bool:
        try:
            with open(os.path.join(folder, ".preflight-" + a["token"])) as f:
                return f.read() == a["token"]
        except OSError:
            return False

    out: dict[str, str | None] = {"tracking": None, "storage": None}
    t = a["tracking"]
    if t["kind"] == "http":
        try:
            with urllib.request.urlopen(t["url"], timeout=a["timeout"]) as r:
                if r.status != 200:
                    out["tracking"] = f"its /health answers HTTP {r.status}"
        except Exception as e:
            out["tracking"] = f"{getattr(e, 'reason', e)}"
    elif t["kind"] in ("sqlite", "file"):
        path = t["path"]
        if not sees_token(t["folder"]):
            out["tracking"] = f"its {t['folder']} is not the driver's folder"
        elif t["kind"] == "sqlite" and t["exists"]:
            try:
                if os.path.getsize(path) == 0 and t["size"] > 0:
                    raise OSError("the file is empty")
                con = sqlite3.connect(Path(path).as_uri() + "?mode=ro", uri=True, timeout=2)
                try:
                    names = {r[0] for r in con.execute("SELECT name FROM experiments")} if t["experiments"] else set()
                finally:
                    con.close()
                missing = sorted(set(t["experiments"]) - names)
                if missing:
                    out["tracking"] = f"its copy lacks the experiment {missing[0]!r}"
            except (OSError, sqlite3.Error) as e:
                out["tracking"] = f"it cannot open {path}: {e}"
    s = a["storage"]
    if s is not None:
        if not sees_token(s):
            out["storage"] = f"its {s} is not the driver's folder"
        else:
            own = os.path.join(s, f".preflight-{a['token']}-{node_id[:12]}")
            try:
                with open(own, "w") as f:
                    f.write(node_id)
                with open(own) as f:
                    if f.read() != node_id:
                        raise OSError("a file written there reads back different")
            except OSError as e:
                out["storage"] = f"it cannot write there: {e}"
            finally:
                try:
                    os.remove(own)
                except OSError:
                    pass
    return out


def main(args: dict[str, Any]) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address=args["address"], logging_level="ERROR", log_to_driver=False)
    print(CONNECTED, flush=True)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    res = ray.cluster_resources()
    out: dict[str, Any] = {
        "CPU": res.get("CPU", 0.0),
        "GPU": res.get("GPU", 0.0),
        "node_CPU": max([n["Resources"].get("CPU", 0.0) for n in nodes] or [0.0]),
        "node_GPU": max([n["Resources"].get("GPU", 0.0) for n in nodes] or [0.0]),
        "nodes": [],
    }
    task = ray.remote(probe)
    refs = [
        task.options(
            num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(args, n["NodeID"])
        for n in nodes
    ]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=args["wait"])
    for n, ref in zip(nodes, refs):
        row = {"id": n["NodeID"], "ip": n.get("NodeManagerAddress", "")}
        if ref not in ready:
            row["error"] = f"it did not answer within {args['wait']:g} s"
        else:
            try:
                row.update(ray.get(ref))
            except Exception as e:
                row["error"] = f"its probe failed: {str(e).splitlines()[0]}"
        out["nodes"].append(row)
    print(RESULT + json.dumps(out), flush=True)
    sys.stderr.flush()
    os._exit(0)  # the driver's teardown costs seconds and proves nothing


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
