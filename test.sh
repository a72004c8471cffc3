#!/usr/bin/env bash
# The test suite: set up .venv with the dev extras and Chromium for the browser tests, then
# run pytest (arguments pass through).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh dev
scripts/install-browser.sh
exec .venv/bin/python -m pytest "$@"
