#!/usr/bin/env bash
# Create the project's virtual environment and install Jiayuan with its dev tools.
# On a fresh Debian machine python3-venv may be missing: install it when we are root.
set -euo pipefail
venv="${1:-.venv}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "Jiayuan needs Python 3.11 or newer as '$python' (set PYTHON=...)." >&2
    exit 1
fi
if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    else
        echo "Python's venv module is missing: run 'sudo apt-get install python3-venv'." >&2
        exit 1
    fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[dev]'

# Dashboard previews draw Chinese titles: a CJK font (small one) when we are root; without
# it the previews still render, with a warning and boxes for the Chinese characters.
if ! fc-list :lang=zh 2>/dev/null | grep -q .; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-zenhei >/dev/null \
            || echo "could not install fonts-wqy-zenhei; previews will lack Chinese glyphs" >&2
    else
        echo "no Chinese font: 'sudo apt-get install fonts-wqy-zenhei' for dashboard previews" >&2
    fi
fi

# The tests' server for the InfluxDB v2 write path (/api/v2/write): VictoriaMetrics
# accepts it, InfluxDB 1.6 does not. Without it that one test is skipped.
if ! command -v victoria-metrics >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq victoria-metrics >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get install -y -qq victoria-metrics >/dev/null; } \
            || echo "could not install victoria-metrics; the v2 write test will be skipped" >&2
    else
        echo "no victoria-metrics: 'sudo apt-get install victoria-metrics' for the v2 write test" >&2
    fi
fi

# The alert page's real-browser tests drive Debian's chromium through its chromium-driver
# (no browser is downloaded). Without them those tests are skipped with the reason.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } \
            || echo "could not install chromium; the browser tests will be skipped" >&2
    else
        echo "no chromium: 'sudo apt-get install chromium chromium-driver' for the browser tests" >&2
    fi
fi
