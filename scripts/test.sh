#!/usr/bin/env bash
# ShardGate's whole test suite (what .ci/run runs):
#   cargo fmt --check, cargo clippy -D warnings, cargo test --workspace.
#
# The end-to-end tests in integration-tests/ need the local sandbox: when its
# ds0 primary (127.0.0.1:13306) does not answer, this installs what is missing
# and starts it (docker/sandbox.sh up; it stays up), unless
# SHARDGATE_NO_SANDBOX=1, in which case those tests print SKIPPED (or fail
# when SHARDGATE_REQUIRE_SANDBOX=1, set by .ci/run and by default under CI).
# Extra arguments go to `cargo test --workspace`, e.g. scripts/test.sh -- --nocapture.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

step() { printf '\n==> %s\n' "$*"; }

export SHARDGATE_SANDBOX_DIR=${SANDBOX_DIR:-$REPO/.sandbox}
# The end-to-end tests need the sandbox: bring it up (and what it needs)
# when it is not running, unless told not to (SHARDGATE_NO_SANDBOX=1).
if ! (exec 3<>/dev/tcp/127.0.0.1/13306) 2>/dev/null && [[ ${SHARDGATE_NO_SANDBOX:-0} != 1 ]]; then
  step "starting the sandbox (docker/sandbox.sh up --primaries 8; stop it with docker/sandbox.sh down)"
  scripts/install-deps.sh
  docker/sandbox.sh up --primaries 8
fi
if (exec 3<>/dev/tcp/127.0.0.1/13306) 2>/dev/null; then
  export SHARDGATE_SANDBOX=1
  # The topology of the last `docker/sandbox.sh up` (default 4 primaries, 2 replicas).
  primaries=4 replicas=2
  if [[ -f $SHARDGATE_SANDBOX_DIR/topology.env ]]; then
    while IFS='=' read -r key value; do
      case $key in
      SANDBOX_PRIMARIES) primaries=$value ;;
      SANDBOX_REPLICAS) replicas=$value ;;
      esac
    done <"$SHARDGATE_SANDBOX_DIR/topology.env"
  fi
  export SHARDGATE_SANDBOX_PRIMARIES=$primaries SHARDGATE_SANDBOX_REPLICAS=$replicas
  echo "sandbox: up ($primaries primaries, $replicas replica(s) each)"
else
  export SHARDGATE_SANDBOX=0
  echo "sandbox: not running on 127.0.0.1:13306; end-to-end tests will skip"
fi
if [[ ${CI:-} == true ]]; then
  export SHARDGATE_REQUIRE_SANDBOX=${SHARDGATE_REQUIRE_SANDBOX:-1}
  export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
  export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
fi
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

t0=$SECONDS
step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace $*"
cargo test --workspace "$@"

step "all checks passed in $((SECONDS - t0))s"
