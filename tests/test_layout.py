"""The package's layers import one way, and the root holds only what the layers share."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pystack3d_dask"

#: Each layer, lowest first, may import the layers before it and itself, nothing after.
LAYERS = ("kernels", "runtime", "store", "io", "steps", "workflow", "datasets", "report")
#: Shared by every layer: the package's errors, the parameter vocabulary, the version.
FOUNDATION = {"errors", "params", "_version"}
#: Applications on top of every layer.
APPLICATIONS = {"cli", "datasets.demo"}
#: Old import paths that the README and the notebooks show, and what they now name.
KEPT_NAMES = {"config": "workflow.config", "plots": "report.plots",
              "quality": "datasets.quality", "sections": "report.sections",
              "synthetic": "datasets.synthetic", "io.store": "store"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Package modules imported by a file (relative imports resolved), without the prefix."""
    mod = _module(path).split(".") if _module(path) else []
    package = mod if path.name == "__init__.py" else mod[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("pystack3d_dask"):
                target = node.module.removeprefix("pystack3d_dask").lstrip(".")
            else:
                continue
            if node.module:
                found.add(target)
            else:
                found.update(f"{target}.{a.name}".lstrip(".") for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("pystack3d_dask").lstrip(".") for a in node.names
                         if a.name.startswith("pystack3d_dask."))
    return found


def _layer(module: str) -> str:
    return module.split(".")[0]


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if _module(p).split(".")[0] in (*LAYERS, *FOUNDATION))


def test_layers_import_one_way():
    wrong = []
    for path in _sources():
        module = _module(path)
        if module in APPLICATIONS or _layer(module) in FOUNDATION:
            continue
        rank = LAYERS.index(_layer(module))
        for target in _imports(path):
            if _layer(target) in FOUNDATION or target in APPLICATIONS:
                if target in APPLICATIONS:
                    wrong.append(f"{module} imports the application {target}")
                continue
            if LAYERS.index(_layer(target)) > rank:
                wrong.append(f"{module} ({_layer(module)}) imports {target}")
    assert not wrong, "\n".join(wrong)


def test_foundation_imports_nothing_above_it():
    for name in FOUNDATION:
        path = PACKAGE / f"{name}.py"
        assert {_layer(t) for t in _imports(path)} <= FOUNDATION, name


def test_kernels_are_pure():
    """Kernels: numpy (or cupy) in, numpy out; no dask, xarray, zarr or file I/O library."""
    heavy = {"dask", "xarray", "zarr", "tifffile", "distributed"}
    for path in (PACKAGE / "kernels").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and not n.level}
        assert not names & heavy, f"{path.name} imports {sorted(names & heavy)}"


def test_the_root_holds_the_shared_modules_and_the_kept_names():
    root = {p.stem for p in PACKAGE.glob("*.py")}
    kept = {name for name in KEPT_NAMES if "." not in name}
    assert root == {"__init__", "__main__", "cli", *FOUNDATION, *kept}
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(LAYERS)


@pytest.mark.parametrize("old", sorted(KEPT_NAMES))
def test_kept_names_are_the_new_modules(old):
    """``from pystack3d_dask.synthetic import write_synthetic`` (the notebooks' import)
    gives the very object of its new home, so a monkeypatch on either reaches both."""
    kept = importlib.import_module(f"pystack3d_dask.{old}")
    new = importlib.import_module(f"pystack3d_dask.{KEPT_NAMES[old]}")
    assert kept is new


def test_the_public_api_still_resolves():
    import pystack3d_dask as p3d
    from pystack3d_dask.io.store import Store
    from pystack3d_dask.report import write_html_report, write_report

    assert p3d.run.__module__ == "pystack3d_dask.workflow.pipeline"
    assert p3d.checkpoint.__module__ == "pystack3d_dask.workflow.checkpointing"
    assert Store.__name__ == "Store"
    assert write_report.__module__ == "pystack3d_dask.report.figures"
    assert write_html_report.__module__ == "pystack3d_dask.report.html"


def test_tests_mirror_the_package():
    tests = Path(__file__).resolve().parent
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert folders <= set(LAYERS), sorted(folders - set(LAYERS))
    for folder in folders:
        assert list((tests / folder).glob("test_*.py")), folder


def test_no_module_over_400_lines_and_no_function_over_80():
    """Modules named for one job stay small enough to read (a module that must be longer
    says why in a comment at its top: ``# long module: <why>``)."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        if source.count("\n") > 400 and "# long module:" not in source[:2000]:
            long.append(f"{path.relative_to(PACKAGE)}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {lines}")
    assert not long, "\n".join(long)
