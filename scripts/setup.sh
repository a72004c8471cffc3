#!/usr/bin/env bash
# Set up .venv: the pinned CPU build of PyTorch, then digitlab (editable) with the extras
# given as $1 (e.g. "dev"). Re-running is quick: nothing is reinstalled unless pyproject.toml,
# this script or the extras changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "digitlab needs Python 3.10 or newer ($python is $("$python" --version 2>&1))" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.digitlab-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) [${extras}]"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setting up .venv (PyTorch CPU build, digitlab${extras:+[$extras]}) ..." >&2
    # The CPU build, pinned: a bare `torch` pulls a multi-GB CUDA build.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        -e ".${extras:+[$extras]}"
    echo "$want" > "$stamp"
fi
