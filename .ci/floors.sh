#!/usr/bin/env bash
# CI: the tests (not the slow ones) on the lowest versions pyproject.toml admits, so that
# each floor it states is one the tests pass on (docs/dependencies.md).
#
# pyproject.toml is the one source of truth: uv installs the package, its test extra
# and its docs extra (the site is then built on those floors, warnings as errors)
# with --resolution lowest-direct (each direct dependency at the lowest version its
# requirement admits, what they pull in at the newest, as a fresh install would get), and
# a check then fails the job where a direct dependency did not land on its floor (a
# floor that no release matches, or that the other requirements do not let it reach).
#
# The test extra is installed whole, pystack3d==2026.2 included: the reference
# implementation states no version bounds of its own, so it installs on this package's
# floors, and the parity tests then check the corrections on them too. The gpu extra is
# left out (no GPU here; the gpu tests skip).
#
# The tests run against the installed package, not the source tree: pytest runs with
# python -P (the current folder is not put on sys.path), and the package is checked to
# be imported from the fresh environment first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/p3d-floors.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q uv
"$PYTHON" -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
# built from a copy of the tree (its committed and new files, as they are now):
# setuptools leaves build/ and an .egg-info beside the sources it builds
mkdir "$WORK/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$WORK/src"
else
  cp -a . "$WORK/src"
fi
# each direct dependency pinned to its floor, as constraints: lowest-direct alone lets a
# transitive preference lift one (the newest boto3 wants a botocore that only the newest
# s3fs accepts, so uv took the newest s3fs); a floor the others cannot reach then fails
# the resolution, here, rather than being stepped over
"$PYTHON" - > "$WORK/floors.txt" <<'FLOORS'
import tomllib

with open("pyproject.toml", "rb") as fid:
    project = tomllib.load(fid)["project"]
extras = project["optional-dependencies"]
for text in project["dependencies"] + extras["test"] + extras["docs"]:
    name, _, rest = text.partition(">=")
    if rest:
        print(f"{name.split('[')[0].strip()}=={rest.split(',')[0].strip()}")
FLOORS
# --compile-bytecode, as pip does at install: without it, where PYTHONDONTWRITEBYTECODE
# is set, each command-line run the tests start compiles all it imports again
"$WORK/tools/bin/uv" pip install -q --python "$PY" --resolution lowest-direct --compile-bytecode \
  --constraint "$WORK/floors.txt" "$WORK/src[test,docs]"

# the versions installed, each direct dependency beside its floor; a mismatch fails
"$PY" -P - <<'EOF'
import importlib.metadata as md
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

with open("pyproject.toml", "rb") as fid:
    project = tomllib.load(fid)["project"]
wrong = []
print(f"{'package':<16} {'floor':<12} installed")
extras = project["optional-dependencies"]
for text in project["dependencies"] + extras["test"] + extras["docs"]:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate():
        continue
    floors = [s.version for s in req.specifier if s.operator in (">=", "==")]
    installed = md.version(req.name)
    print(f"{req.name:<16} {floors[0] if floors else '(none)':<12} {installed}")
    if not floors:
        wrong.append(f"{req.name}: no lower bound in pyproject.toml")
    elif Version(installed) != Version(floors[0]):
        wrong.append(f"{req.name}: floor {floors[0]} but {installed} installed")
print(f"{'pandas':<16} {'-':<12} {md.version('pandas')}")  # xarray's, at its newest
# the other extras' floors are tested where the test extra holds the same requirement
tested = {Requirement(text).name: Requirement(text) for text in
          project["optional-dependencies"]["test"]}
for extra, texts in project["optional-dependencies"].items():
    for text in texts if extra not in ("test", "docs", "gpu") else ():
        req = Requirement(text)
        if req.name not in tested or tested[req.name].specifier != req.specifier:
            wrong.append(f"[{extra}] {text}: not in the test extra as it is, so untested")
if wrong:
    sys.exit("floors not installed as stated in pyproject.toml:\n  " + "\n  ".join(wrong))
EOF
"$PY" -P -c "import pystack3d_dask, sys
assert pystack3d_dask.__file__.startswith(sys.prefix), pystack3d_dask.__file__
print('testing', pystack3d_dask.__file__)"

"$PY" -P -m pytest -m "not slow" -q -p no:cacheprovider
# the docs extra's floors: the site builds on them with warnings as errors
"$PY" -P -m sphinx -q -W --keep-going -b html docs "$WORK/html"
