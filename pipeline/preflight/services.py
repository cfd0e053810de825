"""The preflight's service probes: each within a bounded time, each refusal a ConfigError naming params.yaml's key.

The tracking store opens without anything being created (an `http://` server answers `/health` and takes the
credentials MLflow's client would send), `ray.storage_path` is writable, the Ray address answers, one trial's
resources fit the machine or the cluster, and on a joined cluster every node opens the tracking store and the storage
folder itself (pipeline.ray_probe, in a process of its own). The only files touched are probe files that exist for
the duration of a check and are removed by it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Params
from pipeline.errors import ConfigError
from pipeline.paths import project_root
from pipeline.ray_probe import CONNECTED, RESULT

# A Python process that imports Ray takes seconds on a busy machine; each Ray probe process gets this much on
# top of timeout_s, so a slow import is not reported as a dead cluster.
PYTHON_START_S = 15.0
TRACKING_SCHEMES = ("sqlite:///", "file:", "http://", "https://")


def _env_note(env: str) -> str:
    """Where a setting came from when the environment overrides params.yaml."""
    return f" (from {env})" if os.environ.get(env) else ""


def _sqlite_problem(path: Path) -> str | None:
    """Why an existing file is not a readable SQLite database (opened read-only: nothing is created)."""
    if path.stat().st_size == 0:
        return None  # MLflow lays its schema into an empty file
    try:
        with path.open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                return "it is not an SQLite database"
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except (OSError, sqlite3.Error) as e:
        return f"it cannot be read: {e}"
    return None


def check_tracking(uri: str, timeout_s: float, *, file: str, source: str = "") -> None:
    """The tracking store (an URI resolved like pipeline.tracking) opens without anything being created."""
    from pipeline.tracking import local_store_path

    def refuse(message: str) -> ConfigError:
        return ConfigError(message + source, file=file, key="mlflow.tracking_uri")

    path = local_store_path(uri)
    if path is not None:
        if str(path) in ("", ":memory:", "/:memory:"):
            raise refuse(f"{uri} is an in-memory store: trials in other processes would not see it")
        if not path.parent.is_dir():
            raise refuse(f"folder {path.parent} does not exist ({uri}); create it or fix the path")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise refuse(f"folder {path.parent} is not writable ({uri})")
        if uri.startswith("sqlite:") and path.exists():
            problem = "it is a folder" if path.is_dir() else _sqlite_problem(path)
            if problem:
                raise refuse(f"{path} cannot be the tracking store: {problem}")
        if uri.startswith("file:") and path.exists() and not path.is_dir():
            raise refuse(f"{path} is a file; a file: tracking store is a folder")
        return
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as r:
                if r.status == 200:
                    check_server_credentials(uri, timeout_s, refuse)
                    return
                reason = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            reason = f"HTTP {e.code}"
        except (OSError, ValueError) as e:
            reason = str(getattr(e, "reason", e))
        raise refuse(f"no MLflow server answers at {url} within {timeout_s:g} s ({reason})")
    scheme = uri.split(":", 1)[0] if ":" in uri else uri
    raise refuse(f"unsupported tracking store scheme {scheme!r} ({uri}); allowed: {', '.join(TRACKING_SCHEMES)}")


def check_server_credentials(uri: str, timeout_s: float, refuse: Callable[[str], ConfigError]) -> None:
    """A server behind MLflow's basic-auth app answers /health to anyone but the API only to its users: try one
    read with the credentials MLflow's client would send (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)."""
    import base64

    req = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user is not None and password is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s):
            return
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            who = f"user {user!r}" if user else "no credentials"
            raise refuse(
                f"the MLflow server at {uri} refuses {who} (HTTP {e.code}); set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD to an account of its basic-auth app (docs/cluster.md)"
            ) from None
        raise refuse(f"the MLflow server at {uri} fails its API (HTTP {e.code})") from None
    except (OSError, ValueError) as e:
        raise refuse(f"the MLflow server at {uri} does not answer its API within {timeout_s:g} s ({e})") from None


def _remote(storage: str) -> bool:
    return "://" in storage and not storage.startswith("file://")


def storage_folder(storage: str) -> Path:
    """The folder a storage path lives in: the path itself if it exists, else its nearest existing parent."""
    from pipeline.tracking import local_store_path

    path = local_store_path(storage) if storage.startswith("file://") else None
    path = path or Path(storage)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_storage(storage: str, *, file: str) -> None:
    """`ray.storage_path` can be written: the folder (or its nearest existing parent), without creating it."""
    if _remote(storage):
        return  # s3://, gs://...: Ray's pyarrow filesystem owns those, with credentials preflight has no part in
    folder = storage_folder(storage)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder (storage path {storage})", file=file, key="ray.storage_path")
    try:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError("no write permission")
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".preflight-"):
            pass
    except OSError as e:
        raise ConfigError(
            f"{folder} is not writable (storage path {storage}): {e.strerror or e}", file=file, key="ray.storage_path"
        ) from None


def ray_address(params: Params) -> str | None:
    """The cluster a sweep joins (as pipeline.tune.tuner.init_ray picks it); None: a local runtime."""
    address = params.ray.address or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


def check_ray_address(address: str, timeout_s: float, *, file: str) -> None:
    """A TCP connect to the address's host:port within the timeout (a dead port fails at once)."""
    if address == "auto":
        return  # the address file of a cluster started here; the Ray probe itself tries it
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    source = _env_note("RAY_ADDRESS") if os.environ.get("RAY_ADDRESS") == address else ""
    if not host or not port.isdigit():
        raise ConfigError(
            f"{address!r} is not host:port, ray://host:port or auto{source}", file=file, key="ray.address"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(
            f"no Ray cluster answers at {address} within {timeout_s:g} s ({e.strerror or e}){source}",
            file=file,
            key="ray.address",
        ) from None


@dataclass
class ProbeAnswer:
    result: dict[str, Any] | None  # the probe's JSON, None if it gave none
    connected: bool  # ray.init returned
    why: str  # when result is None: its last output line, or the deadline it missed


def _run_ray_probe(payload: dict[str, Any], connect_s: float, total_s: float) -> ProbeAnswer:
    """Run pipeline.ray_probe: `connect_s` for Python, Ray's import and ray.init, `total_s` for all of it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.ray_probe", json.dumps(payload)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe, read as it comes: a full second pipe would stall the probe
        start_new_session=True,  # so a timeout ends it and anything it started
    )
    assert proc.stdout is not None
    fd, out, t0 = proc.stdout.fileno(), b"", time.monotonic()
    try:
        while True:
            connected = CONNECTED.encode() in out
            left = (total_s if connected else connect_s) - (time.monotonic() - t0)
            if left <= 0:
                os.killpg(proc.pid, signal.SIGKILL)
                return ProbeAnswer(None, connected, f"no answer within {total_s if connected else connect_s:g} s")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                out += chunk
    finally:
        proc.stdout.close()
        proc.wait()
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith(RESULT + "{"):
            return ProbeAnswer(json.loads(line[len(RESULT) :]), True, "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith((CONNECTED, RESULT))]
    return ProbeAnswer(None, CONNECTED in text, lines[-1] if lines else f"exit code {proc.returncode}")


def _node(row: dict[str, Any]) -> str:
    return f"node {row['ip'] or '?'} (id {row['id'][:12]})"


def check_cluster_nodes(
    params: Params,
    uri: str,
    storage: str,
    timeout_s: float,
    *,
    address: str | None = None,
    experiments: Sequence[str] = (),
    file: str = "params.yaml",
) -> dict[str, float]:
    """Every alive node of the joined cluster opens the tracking store (and the studies' experiments in it) and
    writes and reads a file in the storage folder, as the driver sees them. Returns the cluster's CPU and GPU
    totals and its largest node's (`node_CPU`, `node_GPU`).

    For a local store (sqlite, file:) and for the storage folder, the driver leaves a probe file that each node
    must find: that tells a shared folder from a same-named copy. The probe files are removed afterwards."""
    address = address or ray_address(params)
    if not address:
        raise ValueError("check_cluster_nodes needs a Ray address")
    from pipeline.tracking import local_store_path

    token = uuid.uuid4().hex
    tracking: dict[str, Any] = {"kind": "none"}
    path = local_store_path(uri)
    if uri.startswith(("http://", "https://")):
        tracking = {"kind": "http", "url": uri.rstrip("/") + "/health"}
    elif path is not None:
        exists = path.is_file()
        tracking = {
            "kind": "sqlite" if uri.startswith("sqlite:") else "file",
            "path": str(path),
            "folder": str(path.parent if uri.startswith("sqlite:") else storage_folder(str(path))),
            "exists": exists,
            "size": path.stat().st_size if exists else 0,
            "experiments": _local_experiments(path, experiments) if exists and uri.startswith("sqlite:") else [],
        }
    folder = None if _remote(storage) else str(storage_folder(storage))
    probes = {Path(f) / f".preflight-{token}" for f in (tracking.get("folder"), folder) if f}
    payload = {
        "address": address,
        "token": token,
        "tracking": tracking,
        "storage": folder,
        "timeout": timeout_s,
        "wait": timeout_s + PYTHON_START_S,  # a node starts a worker process first
    }
    try:
        for p in probes:
            p.write_text(token)
        answer = _run_ray_probe(payload, timeout_s + PYTHON_START_S, 2 * (timeout_s + PYTHON_START_S) + 10)
    finally:
        for p in probes:
            p.unlink(missing_ok=True)
    source = _env_note("RAY_ADDRESS") if os.environ.get("RAY_ADDRESS") == address else ""
    result = answer.result
    if result is None:
        if answer.connected:
            message = f"the Ray cluster at {address} took a driver but did not answer: {answer.why}"
        else:
            message = f"no Ray cluster answers at {address}: a Ray driver could not connect ({answer.why})"
        raise ConfigError(message + source, file=file, key="ray.address")
    rows = result["nodes"]
    for row in rows:
        if "error" in row:
            raise ConfigError(f"{_node(row)}: {row['error']}{source}", file=file, key="ray.address")
    tsource = _env_note("MLFLOW_TRACKING_URI")
    for row in rows:
        if row["tracking"]:
            if tracking["kind"] == "http":
                what = f"cannot reach the tracking server {uri} ({row['tracking']})"
            else:
                local = "a sqlite file" if tracking["kind"] == "sqlite" else "a file: store"
                what = f"cannot open the tracking store {uri} ({row['tracking']}: {local} is local to one machine)"
            raise ConfigError(
                f"{_node(row)} {what}; use an MLflow server reachable from every node (docs/cluster.md){tsource}",
                file=file,
                key="mlflow.tracking_uri",
            )
    for row in rows:
        if row["storage"]:
            raise ConfigError(
                f"{_node(row)} cannot use {folder} ({row['storage']}); ray.storage_path must be a shared folder, "
                "the same on every node (docs/cluster.md)",
                file=file,
                key="ray.storage_path",
            )
    return {k: float(result[k]) for k in ("CPU", "GPU", "node_CPU", "node_GPU")}


def _local_experiments(db: Path, names: Sequence[str]) -> list[str]:
    """Which of the studies already have an experiment in a local SQLite store (read-only)."""
    if not names or db.stat().st_size == 0:
        return []
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=2)
        try:
            rows = con.execute("SELECT name FROM experiments").fetchall()
        finally:
            con.close()
    except sqlite3.Error:  # no experiments table yet
        return []
    return sorted({r[0] for r in rows} & set(names))


@dataclass
class Need:
    """What one trial of one study asks of the cluster, and where each number is written."""

    workers: tuple[int, str, str]  # value, file, key
    cpus: tuple[float, str, str]
    gpus: tuple[float, str, str]
    where: str  # "study activations, profile tiny"


def local_resources(params: Params) -> dict[str, float]:
    """What a local Ray runtime started by a sweep gets (pipeline.ray_session.start_local_runtime)."""
    import torch

    cpus = params.ray.num_cpus or os.cpu_count() or 1
    gpus = params.ray.num_gpus if params.ray.num_gpus is not None else torch.cuda.device_count()
    return {"CPU": float(cpus), "GPU": float(gpus), "node_CPU": float(cpus), "node_GPU": float(gpus)}


def check_resources(need: Need, have: dict[str, float], where: str, node_where: str) -> None:
    """One trial's workers fit: each on one node (`node_where` names the largest), all of them in `where`."""
    (w, wfile, wkey), (c, cfile, ckey), (g, gfile, gkey) = need.workers, need.cpus, need.gpus
    for unit, per, pfile, pkey in (("CPU", c, cfile, ckey), ("GPU", g, gfile, gkey)):
        if per > have[f"node_{unit}"]:
            raise ConfigError(
                f"one worker needs {per:g} {unit}; {node_where} has {have[f'node_{unit}']:g} ({need.where})",
                file=pfile,
                key=pkey,
            )
        if w * per > have[unit]:
            raise ConfigError(
                f"one trial needs {w} workers x {per:g} {unit} = {w * per:g} {unit}; {where} has {have[unit]:g} "
                f"({need.where})",
                file=wfile,
                key=wkey,
            )


def check_services(params: Params, file: str, needs: Sequence[Need], names: Sequence[str], timeout_s: float) -> None:
    """Tracking store, storage folder, Ray address, resources, and on a joined cluster every node."""
    from pipeline.tracking import resolve_tracking_uri

    root = project_root()
    uri = resolve_tracking_uri(params.mlflow.tracking_uri, root)
    check_tracking(uri, timeout_s, file=file, source=_env_note("MLFLOW_TRACKING_URI"))
    storage = params.ray.storage_path
    storage = storage if Path(storage).is_absolute() or "://" in storage else str(root / storage)
    check_storage(storage, file=file)
    address = ray_address(params)
    if address:
        check_ray_address(address, timeout_s, file=file)
        have = check_cluster_nodes(params, uri, storage, timeout_s, address=address, experiments=names, file=file)
        where = f"the cluster at {address}"
        node_where = f"the largest node of {where}"
    else:
        have, where = local_resources(params), "this machine"
        node_where = where
    for need in needs:
        check_resources(need, have, where, node_where)
