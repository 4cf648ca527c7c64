#!/usr/bin/env bash
# Installs what is missing (Debian packages), builds, and runs one of:
#   demo       the main demo (examples/walkthrough)
#   test       every test, through CTest
#   sanitize   every test again, built with -fsanitize=address,undefined (build-asan/)
#   install    installs into $PREFIX (default /usr/local)
# Environment: BUILD_DIR (default build), JOBS (default: number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-demo}
jobs=${JOBS:-$(nproc)}
# What every mode needs, then what the test modes add: Open MPI (distributed training), Chromium and
# Graphviz and Python 3 (the tape explorer's browser test), clang with libFuzzer (the loaders' fuzz targets).
required=(g++ cmake make libboost-dev libfmt-dev doctest-dev libopenblas-dev zlib1g-dev libdnnl-dev)
case "$mode" in
  test | sanitize)
    required+=(libopenmpi-dev openmpi-bin libboost-mpi-dev chromium graphviz python3 clang libclang-rt-14-dev)
    ;;
esac

missing=()
for p in "${required[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

configure() {  # configure <dir> [cmake args...]
  local dir=$1
  shift
  cmake -S . -B "$dir" "$@" > "$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; exit 1; }
}
build() {  # build <dir> [cmake args...]: configure, then build every target
  configure "$@"
  cmake --build "$1" -j "$jobs"
}

case "$mode" in
  demo)
    # Only the walkthrough and the two libraries it links: the tests, benchmarks and other examples
    # are built by the other modes.
    configure "${BUILD_DIR:-build}"
    cmake --build "${BUILD_DIR:-build}" -j "$jobs" --target walkthrough
    "${BUILD_DIR:-build}/examples/walkthrough"
    ;;
  test)
    build "${BUILD_DIR:-build}"
    ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$jobs"
    ;;
  sanitize)
    build "${BUILD_DIR:-build-asan}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DDELTAGRAD_SANITIZE=ON \
      -DDELTAGRAD_BUILD_EXAMPLES=OFF -DDELTAGRAD_BUILD_BENCH=OFF
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --test-dir "${BUILD_DIR:-build-asan}" --output-on-failure -j "$jobs"
    ;;
  install)
    build "${BUILD_DIR:-build}"
    cmake --install "${BUILD_DIR:-build}" --prefix "${PREFIX:-/usr/local}"
    ;;
  *)
    echo "usage: scripts/setup.sh demo|test|sanitize|install" >&2
    exit 2
    ;;
esac
