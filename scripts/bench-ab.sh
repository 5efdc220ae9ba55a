#!/usr/bin/env bash
# A/B of the share path's criterion benches: the binaries of two builds run alternately, each bench
# on its own, pinned to CPU 1, three rounds; prints criterion's median per run.
# Usage: scripts/bench-ab.sh BEFORE_BIN_DIR AFTER_BIN_DIR, each holding the share_validation-* and
# session_share-* binaries that `cargo bench --locked --bench share_validation --bench session_share
# --no-run` built at the commit to compare (copy them out of target/release/deps/).
set -euo pipefail
before=$1; after=$2
ids_sv=('validate/full_path' 'validate/cached_merkle' 'validate/full_path_accepted' 'validate/cached_merkle_accepted')
ids_ss=('session/submit_accepted' 'session/submit_duplicate')
run() { # bin id
  taskset -c 1 "$1" --bench --noplot --warm-up-time 2 --measurement-time 6 "^$2\$" 2>/dev/null |
    grep -A1 "^$2" | grep -o 'time: *\[[^]]*\]' | awk '{print $4, $5}'
}
for round in 1 2 3; do
  for side in before after; do
    dir=$before; [ $side = after ] && dir=$after
    for id in "${ids_sv[@]}"; do echo "$round $side $id $(run "$dir"/share_validation-* "$id")"; done
    for id in "${ids_ss[@]}"; do echo "$round $side $id $(run "$dir"/session_share-* "$id")"; done
  done
done
