#!/usr/bin/env bash
# Prepares a fresh Debian machine for skroutz-infra in one step: the Debian packages the services
# and tests need, the pinned npm packages (including the Node.js runtime we embed), the executable,
# and the local Redis, Kafka and Docker engine. Safe to run again: every step is idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n[setup] %s\n' "$*" >&2; }

step "Debian packages"
scripts/services.sh install

step "npm packages (package-lock.json)"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

step "build dist/skroutz-infra"
make build

step "local services: Redis, Kafka, Docker"
scripts/services.sh up all

step "done: dist/skroutz-infra is built and the services are up"
