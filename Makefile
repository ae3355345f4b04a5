# Shortcuts for the scripts the README names (scripts/run.sh, scripts/test.sh).
LISTEN ?= 127.0.0.1:9411
CONFIG ?=

.PHONY: run test test-e2e clean

run:
	LISTEN=$(LISTEN) ./scripts/run.sh $(if $(CONFIG),--listen $(LISTEN) --config $(CONFIG))

test:
	./scripts/test.sh

# Only the end-to-end suite, against the debug build.
test-e2e:
	swift build --product tracerelay
	TRACERELAY_BIN=$(CURDIR)/.build/debug/tracerelay .venv/bin/python -m pytest -q Tests/e2e

clean:
	rm -rf .build .venv
