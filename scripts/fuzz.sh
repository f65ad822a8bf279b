#!/usr/bin/env bash
# ShardGate's fuzz targets (fuzz/, cargo-fuzz over libFuzzer; issue 15).
#
#   scripts/fuzz.sh smoke [seconds]      every target for `seconds` (default 40)
#                                        from its committed corpus; what CI runs
#   scripts/fuzz.sh long <target> <min>  one target for <min> minutes at the
#                                        lowest CPU priority; new inputs are
#                                        added to fuzz/corpus/<target>
#   scripts/fuzz.sh cmin [target...]     minimizes the committed corpora (after
#                                        long runs, before committing them)
#   scripts/fuzz.sh list                 the targets
#
# A failing input is saved under fuzz/artifacts/<target>/ and reproduced by
# `cargo +nightly fuzz run -s none <target> <that file>` in fuzz/.
#
# Needs a nightly toolchain and cargo-fuzz: installed here when missing
# (rustup toolchain install nightly; cargo install cargo-fuzz).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ=$REPO/fuzz
cd "$FUZZ"

say() { printf '==> %s\n' "$*"; }
die() {
  echo "fuzz.sh: $*" >&2
  exit 1
}

# No sanitizer: the targets are safe Rust, and without ASan's cost each
# run covers twice the inputs. Overflow checks and debug assertions stay on
# (cargo-fuzz's default), so arithmetic overflow on input values fails.
FUZZ_FLAGS=(-s none)

targets() {
  awk '/^\[\[bin\]\]/ { bin = 1 } bin && /^name = / { gsub(/"/, "", $3); print $3; bin = 0 }' Cargo.toml
}

ensure_tools() {
  if ! rustup toolchain list | grep -q '^nightly'; then
    say "rustup toolchain install nightly --profile minimal"
    rustup toolchain install nightly --profile minimal
  fi
  if ! command -v cargo-fuzz >/dev/null; then
    say "cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
  fi
}

# libFuzzer options a target needs besides the run's own.
target_options() {
  case $1 in
  rewrite_splice) echo "-dict=$FUZZ/dict/sql.dict" ;;
  config_toml) echo "-dict=$FUZZ/dict/toml.dict" ;;
  esac
}

build() {
  say "cargo +nightly fuzz build ${FUZZ_FLAGS[*]}"
  cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"
}

# run <target> <seconds> <corpus dir written to> [options...]: the
# committed corpus is read; new inputs go to the first directory.
run() {
  local target=$1 seconds=$2 into=$3
  shift 3
  mkdir -p "$into" "corpus/$target"
  # shellcheck disable=SC2046 # target_options is zero or one word
  cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$target" "$into" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    $(target_options "$target") "$@"
}

case ${1:-} in
smoke)
  seconds=${2:-40}
  ensure_tools
  build
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  failed=()
  for target in $(targets); do
    say "fuzz $target for ${seconds}s"
    # New inputs go to a scratch directory: a smoke run leaves the
    # committed corpus as it is.
    if ! run "$target" "$seconds" "$scratch/$target" 2>&1 | tail -n 25; then
      failed+=("$target")
    fi
  done
  if ((${#failed[@]})); then
    die "failed: ${failed[*]} (inputs in fuzz/artifacts/)"
  fi
  say "every target ran ${seconds}s without a failure"
  ;;
long)
  target=${2:?usage: scripts/fuzz.sh long <target> <minutes>}
  minutes=${3:?usage: scripts/fuzz.sh long <target> <minutes>}
  targets | grep -qx "$target" || die "no target $target (scripts/fuzz.sh list)"
  ensure_tools
  build
  say "fuzz $target for ${minutes} min (nice 19, one job)"
  nice -n 19 "$REPO/scripts/fuzz.sh" _run "$target" $((minutes * 60))
  ;;
_run)
  # One fuzzing process in the foreground (libFuzzer's -jobs would move
  # its output to fuzz-<n>.log files).
  run "$2" "$3" "corpus/$2"
  ;;
cmin)
  shift
  ensure_tools
  build
  for target in ${@:-$(targets)}; do
    say "cargo fuzz cmin $target"
    # The fewest inputs that reach every edge the corpus reaches (not
    # every hit count of every edge): a few hundred small files a target.
    # shellcheck disable=SC2046 # target_options is zero or one word
    cargo +nightly fuzz cmin "${FUZZ_FLAGS[@]}" "$target" "corpus/$target" -- \
      -set_cover_merge=1 -use_counters=0 $(target_options "$target")
  done
  ;;
list)
  targets
  ;;
*)
  # The header comment: how to use this.
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$REPO/scripts/fuzz.sh"
  exit 2
  ;;
esac
