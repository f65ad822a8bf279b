#!/usr/bin/env bash
# Instructions per query of the proxy process, counted by valgrind's
# callgrind: a figure that does not drift with this machine's speed, for
# comparing two builds in one run (issue 14: "equal or lower than before").
#
# For each build (SHARDGATE_BIN, and BASELINE_BIN when given) and each case
# it starts the proxy under callgrind, warms it with BENCH_WARMUP_EVENTS
# sysbench events, zeroes the counters, runs BENCH_EVENTS events with one
# thread, dumps, and divides the instructions of every proxy thread by the
# queries sysbench reports. Cases:
#   passthrough  examples/wework.toml as shipped (replicas on); sysbench's
#                tables unsharded on ds0
#   sharded      sbtest1..4 sharded by id over ds0..ds3, 4 tables each (the
#                rules of bench/sharded.sh); the data prepared through ShardGate
# times oltp_point_select (prepared and text protocol) and oltp_read_only
# (prepared).
#
# Exit status: 0 when it ran; 1 on a setup error; 2 on a usage error.

set -uo pipefail

usage() {
  cat <<'EOF'
Usage: bench/callgrind.sh [-h|--help]

Needs: the sandbox up (docker/sandbox.sh up), valgrind, sysbench, python3,
a release build (cargo build --release -p shardgate-proxy).

Environment (defaults in brackets):
  SHARDGATE_BIN     the build measured          [target/release/shardgate]
  BASELINE_BIN      a build to compare with, e.g. the previous commit's:
                      git worktree add /tmp/sg-base HEAD~1
                      cargo build --release -p shardgate-proxy \
                        --manifest-path /tmp/sg-base/Cargo.toml
                      BASELINE_BIN=/tmp/sg-base/target/release/shardgate
  BENCH_CASES       passthrough and/or sharded        [passthrough sharded]
  BENCH_EVENTS      measured sysbench events per test               [1000]
  BENCH_WARMUP_EVENTS                                                [200]
  BENCH_TABLE_SIZE  rows per sysbench table                        [10000]
  BENCH_KEEP_DUMPS  a folder to keep each run's callgrind dump in, named
                    <case>-<test>-<protocol>-{this,baseline}.out, for
                    callgrind_annotate                                 [none]
  SANDBOX_PORTS     the primaries of ds0..ds3  [13306 13307 13308 13309]
EOF
}
case ${1:-} in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARDGATE_BIN=${SHARDGATE_BIN:-$REPO/target/release/shardgate}
BASELINE_BIN=${BASELINE_BIN:-}
BENCH_CASES=${BENCH_CASES:-passthrough sharded}
BENCH_EVENTS=${BENCH_EVENTS:-1000}
BENCH_WARMUP_EVENTS=${BENCH_WARMUP_EVENTS:-200}
BENCH_TABLE_SIZE=${BENCH_TABLE_SIZE:-10000}
read -r -a PORTS <<<"${SANDBOX_PORTS:-13306 13307 13308 13309}"
TABLES=4

die() { echo "callgrind.sh: $*" >&2; exit 1; }
log() { echo "[callgrind] $*" >&2; }
for tool in valgrind callgrind_control sysbench python3 mariadb; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs the tools)"
done
[[ -x $SHARDGATE_BIN ]] || die "no build at $SHARDGATE_BIN (cargo build --release -p shardgate-proxy)"
[[ -z $BASELINE_BIN || -x $BASELINE_BIN ]] || die "no build at BASELINE_BIN=$BASELINE_BIN"
for p in "${PORTS[@]}"; do
  mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$p" -uroot -e 'SELECT 1' >/dev/null 2>&1 \
    || die "no primary answers on 127.0.0.1:$p (docker/sandbox.sh up)"
done

TMP=$(mktemp -d)
PROXY_PID=
cleanup() {
  [[ -n $PROXY_PID ]] && kill "$PROXY_PID" 2>/dev/null
  drop_tables >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

read -r PORT ADMIN_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
SB=(--mysql-host=127.0.0.1 --mysql-user=root --mysql-password= --tables=$TABLES
    --table-size="$BENCH_TABLE_SIZE" --mysql-port="$PORT" --mysql-db=wework)

# The config of a case, on the free ports.
config() {
  sed -e "s#^mysql_listen = .*#mysql_listen = \"127.0.0.1:$PORT\"#" \
      -e "s#^admin_listen = .*#admin_listen = \"127.0.0.1:$ADMIN_PORT\"#" "$REPO/examples/wework.toml"
  [[ $1 == sharded ]] || return 0
  for i in $(seq 1 $TABLES); do
    printf '\n[tables.sbtest%s]\nnodes = "ds${0..3}.sbtest%s_${0..3}"\n' "$i" "$i"
    printf 'database = { column = "id", algorithm = "mod", count = 4 }\n'
    printf 'table = { column = "id", expression = "sbtest%s_${(id / 4) %% 4}" }\n' "$i"
  done
}

# Starts binary $1 with config $2 (under callgrind when $3 names an output).
start() {
  local bin=$1 cfg=$2 out=${3:-}
  if [[ -n $out ]]; then
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --config "$cfg" >"$TMP/proxy.log" 2>&1 &
  else
    "$bin" --config "$cfg" >"$TMP/proxy.log" 2>&1 &
  fi
  PROXY_PID=$!
  for _ in $(seq 120); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.5
  done
  cat "$TMP/proxy.log" >&2
  die "$bin did not start"
}

stop() {
  kill "$PROXY_PID" 2>/dev/null
  wait "$PROXY_PID" 2>/dev/null
  PROXY_PID=
}

# Drops the sysbench tables (plain and sharded) on ds0..ds3.
drop_tables() {
  for p in "${PORTS[@]}"; do
    local db=ds$((p - PORTS[0]))
    for i in $(seq 1 $TABLES); do
      local drop="DROP TABLE IF EXISTS sbtest$i"
      for k in 0 1 2 3; do drop+=", sbtest${i}_$k"; done
      mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$p" -uroot "$db" -e "$drop" || return 1
    done
  done
}

# Creates the sysbench tables of a case through the proxy.
prepare() {
  local case=$1
  drop_tables || return 1
  start "$SHARDGATE_BIN" "$TMP/$case.toml"
  local extra=()
  [[ $case == sharded ]] && extra=(--auto_inc=off)
  sysbench oltp_read_only "${SB[@]}" "${extra[@]}" --threads=1 prepare >"$TMP/prepare.log" 2>&1
  local rc=$?
  stop
  ((rc == 0)) || { tail -n 20 "$TMP/prepare.log" >&2; return 1; }
}

# Instructions per query of binary $1 on config $2 for sysbench test $3 in ps mode $4.
measure() {
  local bin=$1 cfg=$2 test=$3 mode=$4 out="$TMP/cg.out"
  rm -f "$out"*
  start "$bin" "$cfg" "$out"
  sysbench "$test" "${SB[@]}" --db-ps-mode="$mode" --threads=1 --time=0 \
    --events="$BENCH_WARMUP_EVENTS" run >"$TMP/warmup.log" 2>&1 || { cat "$TMP/warmup.log" >&2; stop; return 1; }
  callgrind_control -z "$PROXY_PID" >/dev/null
  sysbench "$test" "${SB[@]}" --db-ps-mode="$mode" --threads=1 --time=0 \
    --events="$BENCH_EVENTS" run >"$TMP/run.log" 2>&1 || { cat "$TMP/run.log" >&2; stop; return 1; }
  callgrind_control -d "$PROXY_PID" >/dev/null
  sleep 1
  stop
  local queries
  queries=$(grep -oP 'queries:\s+\K[0-9]+' "$TMP/run.log")
  # The dump after zeroing: its summary line is every thread's instructions.
  local dump
  dump=$(ls -t "$out".* 2>/dev/null | head -n 1)
  [[ -n $dump && -n $queries ]] || return 1
  if [[ -n ${BENCH_KEEP_DUMPS:-} ]]; then
    mkdir -p "$BENCH_KEEP_DUMPS"
    cp "$dump" "$BENCH_KEEP_DUMPS/$DUMP_NAME"
  fi
  awk -v q="$queries" '/^summary:/ { printf "%d\n", $2 / q }' "$dump"
}

printf '%-12s %-18s %-9s %12s %12s %8s\n' case test protocol "this build" baseline ratio
for case in $BENCH_CASES; do
  config "$case" >"$TMP/$case.toml"
  log "$case: preparing $TABLES tables x $BENCH_TABLE_SIZE rows through ShardGate"
  prepare "$case" || die "$case: prepare failed"
  for spec in "oltp_point_select auto prepared" "oltp_point_select disable text" "oltp_read_only auto prepared"; do
    read -r test mode protocol <<<"$spec"
    DUMP_NAME="$case-$test-$protocol-this.out"
    now=$(measure "$SHARDGATE_BIN" "$TMP/$case.toml" "$test" "$mode") || die "$case $test: measuring failed"
    base=- ratio=-
    if [[ -n $BASELINE_BIN ]]; then
      DUMP_NAME="$case-$test-$protocol-baseline.out"
      base=$(measure "$BASELINE_BIN" "$TMP/$case.toml" "$test" "$mode") || die "$case $test: measuring the baseline failed"
      ratio=$(python3 -c "print(f'{$now / $base:.3f}')")
    fi
    printf '%-12s %-18s %-9s %12s %12s %8s\n' "$case" "$test" "$protocol" "$now" "$base" "$ratio"
  done
done
