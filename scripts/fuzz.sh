#!/usr/bin/env bash
# Builds the loaders' libFuzzer targets (tests/fuzz: .npy, .npz + nn::load, IDX, CSV) with clang,
# ASan and UBSan in build-fuzz/, writes their seed corpora with the library's own writers, and runs
# each target for a bounded time.  Fails on the first crash, sanitizer report, leak or timeout, and
# says where the input that caused it was saved.
#   scripts/fuzz.sh [seconds per target, default 30]
# Environment: FUZZ_BUILD_DIR (default build-fuzz), JOBS (targets run side by side; default: cores).
# The corpus each target grows is kept in $FUZZ_BUILD_DIR/corpus/<target> and reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
dir=${FUZZ_BUILD_DIR:-build-fuzz}
jobs=${JOBS:-$(nproc)}
targets=(npy npz idx csv)

launcher=()
if command -v ccache > /dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B "$dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DDELTAGRAD_FUZZ=ON -DDELTAGRAD_BUILD_TESTS=OFF \
  -DDELTAGRAD_BUILD_EXAMPLES=OFF -DDELTAGRAD_BUILD_BENCH=OFF "${launcher[@]}" > "$dir.configure.log" 2>&1 \
  || { cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j "$jobs" --target deltagrad_fuzz_seeds "${targets[@]/#/fuzz_}" > "$dir.build.log" 2>&1 \
  || { tail -50 "$dir.build.log"; exit 1; }

rm -rf "$dir/seeds"
"$dir/tests/fuzz/deltagrad_fuzz_seeds" "$dir/seeds"
mkdir -p "$dir/crashes"

run() {  # run <target>
  local t=$1
  mkdir -p "$dir/corpus/$t"
  # -timeout: one input taking longer than 10 s is a hang; -rss_limit_mb: more memory is a bug.
  "$dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$dir/crashes/$t-" "$dir/corpus/$t" "$dir/seeds/$t" \
    > "$dir/fuzz_$t.log" 2>&1
}

failed=0
pids=()
names=()
report() {  # waits for the oldest running target and reports it
  local t=${names[0]} pid=${pids[0]}
  pids=("${pids[@]:1}")
  names=("${names[@]:1}")
  if wait "$pid"; then
    echo "fuzz_$t: $(grep -m1 -o 'Done [0-9]* runs in [0-9]* second(s)' "$dir/fuzz_$t.log" || echo done), no failure"
  else
    failed=1
    echo "fuzz_$t FAILED; the end of its log ($dir/fuzz_$t.log):"
    tail -40 "$dir/fuzz_$t.log"
    echo "reproduce with: $dir/tests/fuzz/fuzz_$t <the input saved in $dir/crashes/>"
  fi
}
for t in "${targets[@]}"; do
  if ((${#pids[@]} >= jobs)); then report; fi
  run "$t" &
  pids+=($!)
  names+=("$t")
done
while ((${#pids[@]})); do report; done
exit "$failed"
