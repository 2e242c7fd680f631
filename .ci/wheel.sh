#!/usr/bin/env bash
# The package as a user receives it: an sdist and a wheel built by `python -m build` (the
# wheel from the sdist, so a file missing from the sdist fails here), the wheel installed
# in a fresh venv, and its commands run from a folder outside the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip install -q build
python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
ls "$work/dist"
wheel=$(ls "$work"/dist/*.whl)
python - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for needed in ("pystack3d_dask/configs/example.toml", "pystack3d_dask/py.typed",
               "pystack3d_dask/__main__.py"):
    assert needed in names, f"the wheel lacks {needed}"
assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the wheel lacks LICENSE"
assert not any(n.startswith("tests/") for n in names), "the wheel ships the tests"
print(f"wheel: {len(names)} files, example workflow and LICENSE included")
PY
python -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$wheel"
cd "$work"
bin="$work/venv/bin"
"$bin/python" -c "import pystack3d_dask, sys; p = pystack3d_dask.__file__; \
assert p.startswith('$work/venv'), p; print('imports from', p)"
"$bin/python" -m pystack3d_dask --version
"$bin/pystack3d-dask" demo
"$bin/pystack3d-dask" init
"$bin/pystack3d-dask" run workflow.toml --no-report --quiet
"$bin/pystack3d-dask" status example.zarr
