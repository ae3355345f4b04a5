# tracerelay — the two commands a newcomer needs: `make run` and `make test`.
SWIFT ?= swift
CONFIG ?=
LISTEN ?= 127.0.0.1:9411

.PHONY: deps build release run test test-swift test-e2e bench clean

deps:
	./scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Starts the relay on $(LISTEN) with the embedded default config (no external backend needed).
run: release
	.build/release/tracerelay serve --listen $(LISTEN) $(if $(CONFIG),--config $(CONFIG))

# Every test: Swift unit and socket tests, then the real-client end-to-end tests.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(MAKE) test-e2e

test-e2e:
	$(SWIFT) build
	TRACERELAY_BIN=$(CURDIR)/.build/debug/tracerelay .venv/bin/python -m pytest -q Tests/e2e

clean:
	rm -rf .build .venv
