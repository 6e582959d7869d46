#!/usr/bin/env bash
# The Python SDK's checks: mypy --strict on the package, then its tests (unit tests, and the
# integration tests that run the errand binary, real worker processes and FastAPI apps).
#
#   .ci/python.sh            # after `cargo build` (the tests use target/debug/errand)
#   ERRAND_BIN=path/to/errand .ci/python.sh
#
# The virtualenv is target/py-venv (.ci/py-venv.sh: made on first use, reused after; the SDK
# is reinstalled each run so that it tests the checkout). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=py-venv.sh
. .ci/py-venv.sh

export ERRAND_BIN=${ERRAND_BIN:-$PWD/target/debug/errand}
if [ ! -x "$ERRAND_BIN" ]; then
  echo "python: no errand binary at $ERRAND_BIN: the integration tests will be skipped" >&2
fi

echo "python: mypy --strict"
(cd python && "../$venv/bin/mypy" --strict errand tests examples)
echo "python: pytest"
# From the python directory: the tests import the `tests` package, and the worker processes
# they start load tests.integration.app from there (both import this checkout's errand, which
# comes first on the path; the install above brings its dependencies and proves it installs).
# The browser tests (tests/browser) are .ci/browser.sh's.
(cd python && "../$venv/bin/python" -m pytest -q -p no:cacheprovider tests --ignore=tests/browser)
