"""A throwaway PostgreSQL server for tests: Debian's binaries, a fresh cluster, gone at the end."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

USER, DATABASE = "mlflow", "mlflow"


def postgres_bindir() -> Path | None:
    """The newest Debian `/usr/lib/postgresql/<version>/bin`, else `pg_config --bindir`: neither is on PATH."""
    versions = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if p.parents[1].name.isdigit()]
    if versions:
        return max(versions, key=lambda p: int(p.parent.name))
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        pg_config = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        if (Path(pg_config.stdout.strip()) / "initdb").exists():
            return Path(pg_config.stdout.strip())
    return None


@contextlib.contextmanager
def postgres_database(folder: Path) -> Iterator[str]:
    """The SQLAlchemy URI of a database on a new PostgreSQL server on 127.0.0.1 (trust auth, fsync off), stopped and
    deleted at the end; its log is copied to `folder / "postgres.log"`.

    The cluster lives in a short `mkdtemp` folder, not in `folder`: initdb and postgres refuse to run as root, so under
    root they run as the `postgres` user, who cannot traverse pytest's mode-700 /tmp/pytest-of-root; and a Unix socket
    path must fit in 107 bytes."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed: apt-get install postgresql")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="pg-"))
    data, log, port = base / "data", base / "postgres.log", free_port()
    ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        base.chmod(0o755)
        if as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(base, user.pw_uid, user.pw_gid)
        run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "--no-sync"], base)
        run([*ctl, "-w", "-l", str(log), "-o", f"-k {base} -h 127.0.0.1 -p {port} -F", "start"], base)
        run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE], base)
        # The driver named: SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3, which the test extra lacks
        yield f"postgresql+psycopg2://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        subprocess.run([*ctl, "-w", "-m", "immediate", "stop"], cwd=base, capture_output=True)  # fails if none runs
        if log.exists():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, folder / "postgres.log")
        shutil.rmtree(base, ignore_errors=True)


def run(cmd: list[str], cwd: Path) -> None:
    """`cmd` in `cwd` (the postgres user may not be allowed into ours); its stderr in the error if it fails."""
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {done.returncode}): {done.stderr.strip()}")
