#!/usr/bin/env bash
# Checks a running errand API against its own OpenAPI document with schemathesis: every check
# (`--checks all`), in every phase, the stateful one included.
#
#   .ci/schemathesis.sh BASE_URL TOKEN [PEER_TOKEN]
#   .ci/schemathesis.sh http://127.0.0.1:8080 "$(errand token --user alice | tail -n 1)"
#
# Requests carry `Authorization: Bearer TOKEN`. With PEER_TOKEN, a token of another user, the
# two are schemathesis's peers (a Web Fuzzing Commons auth file): requests still go as TOKEN's
# user, and the object_level_authorization check reads what that user got as the other one,
# which must not see it.
#
# schemathesis runs from a virtualenv (target/ci-venv, or $ERRAND_ST_VENV) holding the versions
# pinned in .ci/schemathesis-requirements.txt, made or brought up to date here. Its settings, and
# why each is there, are in .ci/schemathesis.toml. Exits with schemathesis's status: 0 when no
# check failed.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 BASE_URL TOKEN [PEER_TOKEN]   (e.g. $0 http://127.0.0.1:8080 \"\$TOKEN\")" >&2
  exit 2
fi
base=${1%/}
token=$2
peer_token=${3:-}
cd "$(dirname "$0")/.."

venv=${ERRAND_ST_VENV:-target/ci-venv}
requirements=.ci/schemathesis-requirements.txt
if ! cmp -s "$requirements" "$venv/requirements.txt"; then
  echo "schemathesis: installing the pinned versions into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv"; then
    echo "schemathesis: python3 cannot make a virtualenv (on Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi

if [ -z "$peer_token" ]; then
  exec "$venv/bin/st" --config-file .ci/schemathesis.toml run "$base/openapi.json" \
    --checks all \
    --header "Authorization: Bearer $token"
fi
auth_dir=$(mktemp -d)
trap 'rm -rf "$auth_dir"' EXIT
cat >"$auth_dir/auth.json" <<JSON
{"auth": [
  {"name": "caller", "fixedHeaders": [{"name": "Authorization", "value": "Bearer $token"}]},
  {"name": "peer", "fixedHeaders": [{"name": "Authorization", "value": "Bearer $peer_token"}]}
]}
JSON
{
  cat .ci/schemathesis.toml
  printf '\n[auth.wfc]\npath = "%s"\nuser = "caller"\npeers = ["caller", "peer"]\n' "$auth_dir/auth.json"
} >"$auth_dir/schemathesis.toml"
"$venv/bin/st" --config-file "$auth_dir/schemathesis.toml" run "$base/openapi.json" --checks all
