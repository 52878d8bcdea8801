#!/usr/bin/env bash
# The Debian packages the test suite runs for real (`make test` runs this first; so does .ci/run, through make test):
#   chromium      the web page's browser tests (tests/web), driven by playwright (never its own browser download)
#   redis-server  the Redis jobs tests (tests/gateway/jobs), started by their fixture on a loopback port
# Installs whichever is missing with apt-get when running as root; otherwise says which tests will skip and why.
# A quick no-op when both are installed. SYSTEM_DEPS=skip leaves the system alone (and says so).
set -euo pipefail

# command  package  tests that need it
deps=(
  "chromium chromium the browser tests (tests/web)"
  "redis-server redis-server the Redis jobs tests (tests/gateway/jobs/test_jobs_redis.py)"
)

missing=()
for dep in "${deps[@]}"; do
  read -r command package _ <<<"$dep"
  command -v "$command" >/dev/null 2>&1 || missing+=("$dep")
done
[ ${#missing[@]} -eq 0 ] && exit 0

skip() {  # $1: why; the missing packages' tests will skip
  for dep in "${missing[@]}"; do
    read -r command package tests <<<"$dep"
    echo "system-deps: $command is missing ($1): $tests will skip (apt-get install $package)" >&2
  done
}

if [ "${SYSTEM_DEPS:-}" = "skip" ]; then
  skip "SYSTEM_DEPS=skip"
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  skip "not root, so not installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  skip "no apt-get here"
  exit 0
fi

packages=()
for dep in "${missing[@]}"; do
  read -r _ package _ <<<"$dep"
  packages+=("$package")
done
echo "system-deps: installing ${packages[*]} (apt-get, as root)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
for dep in "${missing[@]}"; do
  read -r command package _ <<<"$dep"
  command -v "$command" >/dev/null 2>&1 || { echo "system-deps: $package installed but $command is not on PATH" >&2; exit 1; }
  echo "system-deps: $package installed ($(command -v "$command"))"
done
