#!/usr/bin/env bash
# The dashboard's browser tests (python/tests/browser): Playwright for Python drives Debian's
# Chromium (installed here with apt-get when /usr/bin/chromium is missing: Playwright's own
# browser download needs the internet) through the pages of live `errand serve` processes
# with Python workers.
#
#   .ci/browser.sh            # after `cargo build -p errand` (the tests use target/debug/errand)
#   ERRAND_BIN=path/to/errand .ci/browser.sh
#
# The tests skip only when Chromium is missing (it could not be installed); they save the
# screenshots of docs/screenshots. Exits non-zero on any failure, or without the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=py-venv.sh
. .ci/py-venv.sh

chromium=${ERRAND_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "browser: installing chromium"
  if ! { as_root apt-get update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    echo "browser: chromium could not be installed: the browser tests will be skipped" >&2
  fi
fi

export ERRAND_BIN=${ERRAND_BIN:-$PWD/target/debug/errand}
if [ ! -x "$ERRAND_BIN" ]; then
  echo "browser: no errand binary at $ERRAND_BIN: run \`cargo build -p errand\` first" >&2
  exit 1
fi

echo "browser: pytest tests/browser ($("$chromium" --version 2>/dev/null || echo "no chromium"))"
(cd python && "../$venv/bin/python" -m pytest -q -rs -p no:cacheprovider tests/browser)
