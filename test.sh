#!/usr/bin/env bash
# The test suite: set up .venv with the dev extras, then run pytest (arguments pass through).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh dev
exec .venv/bin/python -m pytest "$@"
