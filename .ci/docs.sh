#!/usr/bin/env bash
# CI: the documentation site, built with warnings as errors (a broken docstring, a
# dangling link between the guides or a step table that no longer renders fails here).
# Usage: bash .ci/docs.sh [--no-install] [OUTPUT_DIR]   (default: docs/_build/html)
# --no-install: the docs extra is already there (a developer's environment).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--no-install" ]]; then
  shift
else
  pip install -q ".[docs]"
fi
out="${1:-docs/_build/html}"
# the pages document the checkout (docs/conf.py puts it first on sys.path)
start=$SECONDS
python -m sphinx -W --keep-going -b html docs "$out"
echo ".ci/docs.sh: built $out in $((SECONDS - start)) s"
