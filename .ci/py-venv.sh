# Sourced (from the repository's root) by .ci/python.sh and .ci/browser.sh: the virtualenv
# target/py-venv, made on first use (installing python3-venv if it must) and reused after, with
# this checkout's SDK and its test dependencies installed into it on every run (so that it
# tests the checkout). Sets $venv and defines as_root.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

venv=target/py-venv
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m ensurepip --version >/dev/null 2>&1; then
    echo "python: installing python3-venv"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  echo "python: making the virtualenv $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check './python[fastapi,test]'
