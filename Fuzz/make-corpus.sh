#!/usr/bin/env bash
# Regenerates the seeds of the engine targets in Fuzz/Corpus/ from real engines (an HTTP/2
# client/server conversation, spill segments written by a wal-mode queue) and the request and
# response samples in Sources/FuzzParsers/Corpus.swift.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
fuzz_build
mkdir -p "$FUZZ_DIR/Corpus"
FUZZ_TARGET=make-corpus "$FUZZ_BIN" "$FUZZ_DIR/Corpus"
