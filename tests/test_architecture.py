"""The import architecture (docs/architecture.md): layers point down, no import cycles beyond the registry idiom,
no private names imported across modules, and every DVC stage lists the project code it runs among its deps.

    python tests/test_architecture.py --print-deps    # the minimal code deps of each dvc.yaml stage
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import grimp
import pytest
import yaml

from pipeline.codegraph import build_graph, module_closure, module_file

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "pipeline"
SOURCE_DIRS = ("pipeline", "stages", "benchmarks")  # where the private-import rule holds (tests may reach inside)

Graph = dict[str, set[str]]  # module -> the project modules it imports directly


def module_graph(package: str = PACKAGE) -> tuple[grimp.ImportGraph, Graph]:
    """The project's import graph (`pipeline.codegraph`, which also keys trials on their code) and the same as a
    plain adjacency dict."""
    graph = build_graph(package)
    return graph, {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def _parent(module: str) -> str:
    return module.rpartition(".")[0]


# --------------------------------------------------------------------------- import cycles


def strongly_connected_components(graph: Graph) -> list[set[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on long import chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def forbidden_cycles(graph: Graph) -> list[str]:
    """Every import cycle except the registry idiom, one line per strongly connected component.

    The registry idiom: a package's `__init__` imports the modules directly inside it (so that they register),
    and those modules import the package back (for its registry), directly or through a sibling. A component
    of more than one module is allowed only if
      1. every edge in it that imports a package P comes from a module directly inside P,
      2. every edge in it from a package P goes to a module directly inside P, and
      3. no cycle is left among its plain modules: every cycle runs through a package's `__init__`.
    A cycle between two plain modules (`tasks` <-> `tasks_text`) breaks 3; a module outside a package that both
    imports it and is imported by one of its members (`config` -> `models` -> `models.cnn` -> `config`) breaks 1.
    """
    packages = {_parent(m) for m in graph if "." in m}
    problems = []
    for component in strongly_connected_components(graph):
        if len(component) < 2:
            continue
        edges = sorted((a, b) for a in component for b in graph.get(a, ()) if b in component)
        bad = [(a, b) for a, b in edges if (b in packages and _parent(a) != b) or (a in packages and _parent(b) != a)]
        plain = {m: {b for b in graph.get(m, ()) if b in component and b not in packages} for m in component}
        plain = {m: targets for m, targets in plain.items() if m not in packages}
        for cycle in strongly_connected_components(plain):
            if len(cycle) > 1:
                bad += [(a, b) for a, b in edges if a in cycle and b in cycle]
        if bad:
            problems.append(
                f"cycle among {', '.join(sorted(component))}; not the registry idiom: "
                + ", ".join(f"{a} -> {b}" for a, b in sorted(set(bad)))
            )
    return problems


# --------------------------------------------------------------------------- private names


def python_files(root: Path = REPO, dirs: Iterable[str] = SOURCE_DIRS) -> list[Path]:
    return sorted(p for d in dirs for p in (root / d).rglob("*.py"))


def private_imports(files: Iterable[Path], root: Path = REPO) -> list[str]:
    """`from pipeline.x import _name` (or a relative `from .x import _name`) anywhere in `files`, function bodies
    included: a private name belongs to its module. Dunder names (`__version__`) are public."""
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = node.module or ""
            if node.level == 0 and module != PACKAGE and not module.startswith(PACKAGE + "."):
                continue  # another project's names (`__future__` included)
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    rel = path.relative_to(root) if path.is_relative_to(root) else path
                    found.append(f"{rel}:{node.lineno}: from {'.' * node.level}{module} import {name}")
    return found


# --------------------------------------------------------------------------- dvc.yaml deps


def stage_scripts(dvc: dict) -> dict[str, tuple[Path, list[str]]]:
    """stage name -> (its `stages/<x>.py` script, its deps); a `foreach` stage's body is its `do`."""
    out = {}
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        match = re.search(r"\bstages/[\w/]+\.py\b", body["cmd"])
        assert match, f"stage {name}: no stages/<x>.py in its cmd {body['cmd']!r}"
        out[name] = (REPO / match.group(0), [str(d) for d in body.get("deps", [])])
    return out


def imported_modules(script: Path, graph: grimp.ImportGraph) -> set[str]:
    """The project modules a script (not part of the package) imports itself, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(script.read_text(), filename=str(script))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == PACKAGE:
            for alias in node.names:  # `from pipeline import tracking` imports the module pipeline.tracking
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in graph.modules else node.module)
    return found


def covered(file: str, deps: Iterable[str]) -> bool:
    """A dep names the file itself or a folder above it."""
    return any(Path(file).is_relative_to(d.rstrip("/")) for d in deps)


def stage_code_files(graph: grimp.ImportGraph, dvc: dict | None = None) -> dict[str, tuple[Path, set[str], list[str]]]:
    """stage -> (script, the project files it runs, its deps in dvc.yaml)."""
    dvc = dvc or yaml.safe_load((REPO / "dvc.yaml").read_text())
    out = {}
    for name, (script, deps) in stage_scripts(dvc).items():
        modules = module_closure(imported_modules(script, graph), graph)
        files = {f for f in map(module_file, modules) if f is not None}
        out[name] = (script, files, deps)
    return out


def minimal_deps(files: set[str], graph: grimp.ImportGraph, package: str = PACKAGE) -> list[str]:
    """`files` as few entries as possible: a package's folder when every module in it is needed, else its files."""
    modules_of = {m: module_file(m) for m in graph.modules}

    def walk(pkg: str) -> list[str]:
        inside = [pkg, *graph.find_descendants(pkg)]
        if all(modules_of[m] in files for m in inside if modules_of[m] is not None):
            return [module_file(pkg).rsplit("/", 1)[0]]  # the package's folder
        out = [modules_of[pkg]] if modules_of[pkg] in files else []
        for child in sorted(graph.find_children(pkg)):
            if graph.find_children(child):
                out += walk(child)
            elif modules_of[child] in files:
                out.append(modules_of[child])
        return out

    return sorted(walk(package))


def print_deps() -> None:
    """Each stage's deps as dvc.yaml would list them: its script, its other (non-code) deps kept as they are,
    then the minimal set of project files and package folders it runs."""
    graph, _ = module_graph()
    for name, (script, files, deps) in stage_code_files(graph).items():
        script_rel = script.relative_to(REPO).as_posix()
        kept = [d for d in deps if d != script_rel and not Path(d).is_relative_to(PACKAGE)]
        print(f"{name}:\n  deps:")
        for dep in [script_rel, *kept, *minimal_deps(files, graph)]:
            print(f"    - {dep}")


# --------------------------------------------------------------------------- the checks on this project


@pytest.fixture(scope="module")
def project() -> tuple[grimp.ImportGraph, Graph]:
    return module_graph()


def test_layers_contract_is_kept():
    """import-linter's `layers` contract in pyproject.toml (what `lint-imports` checks)."""
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.exists(), f"{exe} missing: install the test extra (pip install -e '.[test]')"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [str(exe), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"lint-imports failed:\n{proc.stdout}\n{proc.stderr}"


def test_no_import_cycles_but_the_registry_idiom(project):
    _, graph = project
    problems = forbidden_cycles(graph)
    assert not problems, "\n".join(problems)


def test_no_private_names_imported_across_modules():
    found = private_imports(python_files())
    assert not found, "private names imported from another module:\n" + "\n".join(found)


def test_dvc_deps_cover_the_code_each_stage_runs(project):
    graph, _ = project
    missing = {
        name: sorted(f for f in files if not covered(f, deps))
        for name, (_, files, deps) in stage_code_files(graph).items()
    }
    missing = {name: files for name, files in missing.items() if files}
    assert not missing, (
        "dvc.yaml deps miss code their stage runs (python tests/test_architecture.py --print-deps):\n"
        + "\n".join(f"  {name}: {', '.join(files)}" for name, files in missing.items())
    )


def test_dvc_code_deps_exist():
    """A code dep that names no file (a module moved or deleted) makes `dvc repro` fail."""
    absent = {
        name: [d for d in deps if Path(d).is_relative_to(PACKAGE) and not (REPO / d).exists()]
        for name, (_, deps) in stage_scripts(yaml.safe_load((REPO / "dvc.yaml").read_text())).items()
    }
    absent = {name: deps for name, deps in absent.items() if deps}
    assert not absent, "dvc.yaml deps name no file:\n" + "\n".join(f"  {n}: {', '.join(d)}" for n, d in absent.items())


# --------------------------------------------------------------------------- the checks can fail


def _write_package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cycle_check_rejects_two_modules_importing_each_other(tmp_path, monkeypatch):
    # As pipeline.tasks and pipeline.tasks_text once were: the function-level import counts too.
    _write_package(
        tmp_path,
        {
            "cyc_a/__init__.py": "",
            "cyc_a/tasks.py": "from cyc_a import tasks_text\n",
            "cyc_a/tasks_text.py": "def f():\n    from cyc_a.tasks import g\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (problem,) = forbidden_cycles(module_graph("cyc_a")[1])
    assert "cyc_a.tasks -> cyc_a.tasks_text" in problem and "cyc_a.tasks_text -> cyc_a.tasks" in problem


def test_cycle_check_accepts_the_registry_idiom_and_rejects_an_outsider(tmp_path, monkeypatch):
    registry = {
        "cyc_b/__init__.py": "",
        "cyc_b/models/__init__.py": "MODELS = {}\nfrom cyc_b.models import cnn, mlp\n",
        "cyc_b/models/cnn.py": "from cyc_b.models import MODELS\n",
        "cyc_b/models/mlp.py": "from cyc_b.models.base import register\n",  # back to the package through a sibling
        "cyc_b/models/base.py": "from cyc_b.models import MODELS\n\ndef register(name): ...\n",
    }
    _write_package(tmp_path, registry)
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = module_graph("cyc_b")[1]
    assert any(len(c) > 2 for c in strongly_connected_components(graph))  # there is a cycle, and it is allowed
    assert forbidden_cycles(graph) == []

    # A module outside the package in the loop: config -> models -> models.cnn -> config.
    _write_package(
        tmp_path,
        {
            **{k.replace("cyc_b", "cyc_c"): v.replace("cyc_b", "cyc_c") for k, v in registry.items()},
            "cyc_c/models/cnn.py": "from cyc_c.models import MODELS\nfrom cyc_c import config\n",
            "cyc_c/config.py": "def f():\n    from cyc_c.models import MODELS\n",
        },
    )
    (problem,) = forbidden_cycles(module_graph("cyc_c")[1])
    assert "cyc_c.config -> cyc_c.models" in problem


def test_private_import_check_finds_one(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "from __future__ import annotations\n"
        "from pipeline import __version__\n"
        "from pipeline.sweep import run_study\n"
        "def g():\n"
        "    from pipeline.sweep import _readable_checkpoint\n"
    )
    assert private_imports([f], tmp_path) == ["m.py:5: from pipeline.sweep import _readable_checkpoint"]


def test_dvc_check_sees_a_missing_dep(project):
    graph, _ = project
    dvc = {"stages": {"s": {"cmd": "python stages/study.py --x", "deps": ["stages/study.py", "pipeline/config.py"]}}}
    (_, files, deps) = stage_code_files(graph, dvc)["s"]
    assert "pipeline/sweep.py" in files and "pipeline/trial.py" in files  # imported by sweep, so run too
    assert not covered("pipeline/sweep.py", deps) and covered("pipeline/config.py", deps)
    assert covered("pipeline/data/text.py", ["pipeline/data"]) and not covered(
        "pipeline/datainfo.py", ["pipeline/data"]
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--print-deps", action="store_true", help="print each dvc.yaml stage's minimal deps")
    if ap.parse_args().print_deps:
        print_deps()
    else:
        ap.print_help()
