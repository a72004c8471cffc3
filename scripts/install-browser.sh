#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (never a browser a test tool downloads). Install it
# with apt-get where this machine allows (root and apt-get present); otherwise say why, and
# the browser tests skip (or fail under CI=true).
set -uo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium and chromium-driver for the browser tests ..." >&2
    apt-get update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
            >/dev/null 2>&1 ||
        echo "could not install chromium; the browser tests will not run" >&2
else
    echo "chromium is missing and cannot be installed here (needs root and apt-get);" \
         "the browser tests will skip" >&2
fi
exit 0
