#!/usr/bin/env bash
# The test command README.md gives: sets up what the tests need on a fresh Debian machine with Rust
# (scripts/setup.sh, a no-op when all of it is there), then runs the whole suite. Arguments go to
# `cargo test` (e.g. `scripts/test.sh --test fleet_sessions`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec cargo test --workspace --locked "$@"
