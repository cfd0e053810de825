"""The project's import graph: which modules run when one is imported, and a fingerprint of their source.

One graph serves two readers. `tests/test_architecture.py` checks that each `dvc.yaml` stage lists, among its
deps, every module its script runs; a sweep keys each trial on a fingerprint of the modules the trial runs
(`pipeline.trial.trial_identity`), so that a change to that code trains the trial again and any other change
does not. grimp builds the graph from the source, function-level imports included.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "pipeline"
ROOT = Path(__file__).resolve().parents[1]  # the folder that holds the package


def build_graph(package: str = PACKAGE):
    """grimp's import graph of `package`. No cache: grimp would otherwise write `.grimp_cache` into the working
    directory."""
    import grimp

    return grimp.build_graph(package, cache_dir=None)


def module_closure(start: Iterable[str], graph) -> set[str]:
    """Every project module that runs when `start` is imported: what they import, transitively (grimp's
    "upstream"), and every package above each of those, whose `__init__` Python runs first."""
    todo, seen = list(start), set()
    while todo:
        module = todo.pop()
        if module in seen or module not in graph.modules:
            continue
        seen.add(module)
        todo += graph.find_upstream_modules(module)
        todo += [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
    return seen


def module_file(module: str, root: Path = ROOT) -> str | None:
    """`pipeline/x.py` or `pipeline/x/__init__.py`, relative to `root`; None for a namespace package."""
    base = root.joinpath(*module.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path.relative_to(root).as_posix()
    return None


@functools.cache
def code_fingerprint(module: str) -> str:
    """sha256 over the path and bytes of every file that importing `module` runs (its closure). Whitespace and
    comments count: telling a harmless edit from one that changes what runs is not worth a wrong cache hit."""
    files = sorted(f for f in map(module_file, module_closure([module], build_graph())) if f is not None)
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    return digest.hexdigest()
