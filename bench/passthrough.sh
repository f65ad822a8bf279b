#!/usr/bin/env bash
# ShardGate pass-through benchmark (issue 2, section 6).
#
# One run drives sysbench oltp_point_select and oltp_read_only at 8 and 32
# threads against three endpoints that all end at ds0's primary:
#   direct     ds0's mariadbd itself                (127.0.0.1:13306, db ds0)
#   haproxy    HAProxy, mode tcp, forwarding to it  (127.0.0.1:13400, db ds0)
#   shardgate  target/release/shardgate            (127.0.0.1:3307,  db wework)
# and prints QPS, p95 latency, the ratio to direct, ShardGate/HAProxy, and the
# CPU microseconds per query of the proxy process and of mariadbd (from
# /proc/<pid>/stat utime+stime, before/after each run, divided by the number of
# queries sysbench reports). Results also go to bench/results/.
#
# Exit status: 0 when the benchmark ran (a missed target is not a failure, and
# neither is a missing or broken shardgate: it is reported and skipped);
# 1 on a setup error (sysbench/haproxy/mariadb client missing, ds0 unreachable,
# prepare failed, HAProxy would not start); 2 on a usage error.

set -uo pipefail

usage() {
  cat <<'EOF'
Usage: bench/passthrough.sh [-h|--help]

Needs: the sandbox up (docker/sandbox.sh up) or any MariaDB given by DS0_*,
sysbench, haproxy, the mariadb client, python3. Run from anywhere.

Environment (defaults in brackets):
  BENCH_SECONDS        measured seconds per run                      [20]
  BENCH_WARMUP         unmeasured warm-up seconds before each run    [2]
  BENCH_PS_MODE        sysbench --db-ps-mode: auto (server-side
                       prepared statements) or disable (text protocol) [auto]
  BENCH_TESTS          sysbench tests        [oltp_point_select oltp_read_only]
  BENCH_THREADS        thread counts                                 [8 32]
  BENCH_ENDPOINTS      subset of: direct haproxy shardgate   [all three]
  BENCH_TABLES / BENCH_TABLE_SIZE   sysbench data set                [4 / 10000]
  BENCH_KEEP_TABLES    1 = leave the sbtest tables in ds0 at the end [0]
  BENCH_RESULTS_DIR    where the report goes                  [bench/results]
  DS0_HOST DS0_PORT DS0_USER DS0_PASSWORD DS0_DB
                       ds0's primary           [127.0.0.1 13306 root "" ds0]
  MARIADBD_PID         pid to measure for mariadbd [found via ss -ltnp on
                       DS0_PORT, else $SANDBOX_DIR/ds0/*.pid]
  SANDBOX_DIR          sandbox folder                          [<repo>/.sandbox]
  HAPROXY_PORT         HAProxy listen port                           [13400]
  HAPROXY_NBTHREAD     HAProxy nbthread                              [1]
  SHARDGATE_WORKER_THREADS  shardgate's server.worker_threads: as many
                       threads as HAProxy gets, for a like-for-like
                       comparison                       [HAPROXY_NBTHREAD]
  SHARDGATE_BUILD      1 = cargo build --release -p shardgate-proxy first [1]
  SHARDGATE_BIN        proxy binary                [target/release/shardgate]
  SHARDGATE_CONFIG     config copied to a temp file [examples/wework.toml]
                       (the copy gets the listen ports below and ds0's url
                       rewritten to DS0_*)
  SHARDGATE_PORT SHARDGATE_ADMIN_PORT                          [3307 9797]
                       (when left unset and taken, e.g. by another running
                       shardgate, two free ports are used instead)
  SHARDGATE_USER SHARDGATE_PASSWORD SHARDGATE_DB           [root "" wework]
  RUST_LOG             passed to shardgate                           [warn]

Defaults take about 5 minutes (12 runs of 2+20 s) plus the cargo build.
Quick check: BENCH_SECONDS=5 BENCH_WARMUP=1 bench/passthrough.sh
EOF
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")

BENCH_SECONDS=${BENCH_SECONDS:-20}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_PS_MODE=${BENCH_PS_MODE:-auto}
BENCH_TESTS=${BENCH_TESTS:-oltp_point_select oltp_read_only}
BENCH_THREADS=${BENCH_THREADS:-8 32}
BENCH_ENDPOINTS=${BENCH_ENDPOINTS:-direct haproxy shardgate}
BENCH_TABLES=${BENCH_TABLES:-4}
BENCH_TABLE_SIZE=${BENCH_TABLE_SIZE:-10000}
BENCH_KEEP_TABLES=${BENCH_KEEP_TABLES:-0}
BENCH_RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
DS0_HOST=${DS0_HOST:-127.0.0.1}
DS0_PORT=${DS0_PORT:-13306}
DS0_USER=${DS0_USER:-root}
DS0_PASSWORD=${DS0_PASSWORD:-}
DS0_DB=${DS0_DB:-ds0}
SANDBOX_DIR=${SANDBOX_DIR:-$REPO/.sandbox}
MARIADBD_PID=${MARIADBD_PID:-}
HAPROXY_PORT=${HAPROXY_PORT:-13400}
HAPROXY_NBTHREAD=${HAPROXY_NBTHREAD:-1}
SHARDGATE_WORKER_THREADS=${SHARDGATE_WORKER_THREADS:-$HAPROXY_NBTHREAD}
SHARDGATE_BUILD=${SHARDGATE_BUILD:-1}
SHARDGATE_BIN=${SHARDGATE_BIN:-$REPO/target/release/shardgate}
SHARDGATE_CONFIG=${SHARDGATE_CONFIG:-$REPO/examples/wework.toml}
SG_PORT_GIVEN=${SHARDGATE_PORT:+1}${SHARDGATE_ADMIN_PORT:+1}
SHARDGATE_PORT=${SHARDGATE_PORT:-3307}
SHARDGATE_ADMIN_PORT=${SHARDGATE_ADMIN_PORT:-9797}
SHARDGATE_USER=${SHARDGATE_USER:-root}
SHARDGATE_PASSWORD=${SHARDGATE_PASSWORD:-}
SHARDGATE_DB=${SHARDGATE_DB:-wework}
export RUST_LOG=${RUST_LOG:-warn}

die() { echo "passthrough.sh: setup error: $*" >&2; exit 1; }
log() { echo "[bench] $*" >&2; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_uint "$BENCH_SECONDS" && (( BENCH_SECONDS > 0 )) || { echo "BENCH_SECONDS must be a positive integer" >&2; exit 2; }
is_uint "$BENCH_WARMUP" || { echo "BENCH_WARMUP must be an integer" >&2; exit 2; }
case "$BENCH_PS_MODE" in auto|disable) ;; *) echo "BENCH_PS_MODE must be auto or disable" >&2; exit 2 ;; esac
for t in $BENCH_THREADS; do is_uint "$t" && (( t > 0 )) || { echo "bad BENCH_THREADS: $t" >&2; exit 2; }; done
for e in $BENCH_ENDPOINTS; do case "$e" in direct|haproxy|shardgate) ;; *) echo "bad BENCH_ENDPOINTS entry: $e" >&2; exit 2 ;; esac; done
want() { [[ " $BENCH_ENDPOINTS " == *" $1 "* ]]; }

# ------------------------------------------------------------- tools ----
command -v sysbench >/dev/null || die "sysbench not found (apt-get install -y sysbench)"
command -v python3  >/dev/null || die "python3 not found"
command -v ss       >/dev/null || die "ss not found (apt-get install -y iproute2)"
MYSQL=$(command -v mariadb || command -v mysql) || die "mariadb client not found (apt-get install -y mariadb-client)"
if want haproxy; then
  command -v haproxy >/dev/null || die "haproxy not found (apt-get install -y haproxy)"
fi
CLK_TCK=$(getconf CLK_TCK)

# sql HOST PORT USER PASSWORD DB STATEMENT...
sql() {
  local h=$1 p=$2 u=$3 pw=$4 db=$5; shift 5
  MYSQL_PWD=$pw "$MYSQL" --protocol=TCP -h"$h" -P"$p" -u"$u" --connect-timeout=3 -N -B "$db" -e "$*"
}
port_pids() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }
port_busy() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

# ------------------------------------------------------ temp + cleanup ----
TMP=$(mktemp -d /tmp/shardgate-bench.XXXXXX)
HAP_PID= SG_PID= RUN_PID= PREPARED=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in $RUN_PID $SG_PID $HAP_PID; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null
      for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    fi
  done
  if (( PREPARED )) && [[ $BENCH_KEEP_TABLES != 1 ]]; then
    log "dropping the sbtest tables from $DS0_DB"
    sysbench oltp_point_select "${SB_DS0[@]}" --tables="$BENCH_TABLES" cleanup >>"$TMP/prepare.log" 2>&1 \
      || log "warning: sysbench cleanup failed (see $TMP/prepare.log)"
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
# Long commands run in the background and are waited for, so that a signal
# interrupts the wait at once and cleanup stops them (see cleanup above).
run_bg() { "$@" & RUN_PID=$!; wait "$RUN_PID"; local rc=$?; RUN_PID=; return "$rc"; }
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------- ds0 ----
sql "$DS0_HOST" "$DS0_PORT" "$DS0_USER" "$DS0_PASSWORD" "$DS0_DB" "SELECT 1" >/dev/null 2>"$TMP/err" \
  || die "cannot reach ds0 at $DS0_HOST:$DS0_PORT db $DS0_DB as $DS0_USER: $(tr '\n' ' ' <"$TMP/err")
  (start the sandbox with docker/sandbox.sh up, or point DS0_HOST/DS0_PORT/DS0_DB at a MariaDB)"
DB_VERSION=$(sql "$DS0_HOST" "$DS0_PORT" "$DS0_USER" "$DS0_PASSWORD" "$DS0_DB" "SELECT VERSION()")

find_mariadbd_pid() {
  if [[ -n $MARIADBD_PID ]]; then echo "$MARIADBD_PID"; return; fi
  local p; p=$(port_pids "$DS0_PORT" | head -1)
  if [[ -n $p ]]; then echo "$p"; return; fi
  local f
  for f in "$SANDBOX_DIR"/ds0/*.pid; do
    [[ -r $f ]] && { tr -dc '0-9' <"$f"; return; }
  done
}
DB_PID=$(find_mariadbd_pid)
if [[ -z $DB_PID || ! -r /proc/$DB_PID/stat ]]; then
  log "warning: mariadbd pid for port $DS0_PORT not found (set MARIADBD_PID); its CPU column stays empty"
  DB_PID=
else
  DB_COMM=$(cat "/proc/$DB_PID/comm")
  [[ $DB_COMM == mariadbd || $DB_COMM == mysqld ]] \
    || log "warning: pid $DB_PID listening on $DS0_PORT is '$DB_COMM', not mariadbd"
fi

SB_COMMON=(--db-driver=mysql --tables="$BENCH_TABLES" --table-size="$BENCH_TABLE_SIZE"
           --db-ps-mode="$BENCH_PS_MODE" --mysql-ssl=off --report-interval=0)
SB_DS0=(--mysql-host="$DS0_HOST" --mysql-port="$DS0_PORT" --mysql-user="$DS0_USER"
        --mysql-password="$DS0_PASSWORD" --mysql-db="$DS0_DB")

# ------------------------------------------------------- shardgate build ----
SG_STATUS="not requested"
if want shardgate; then
  SG_STATUS=ok
  if [[ $SHARDGATE_BUILD == 1 ]]; then
    if command -v cargo >/dev/null; then
      log "building shardgate (cargo build --release -p shardgate-proxy) ..."
      if ! (cd "$REPO" && cargo build --release -p shardgate-proxy) >"$TMP/build.log" 2>&1; then
        SG_STATUS="cargo build --release -p shardgate-proxy failed"
        log "shardgate: $SG_STATUS; last lines:"; tail -n 8 "$TMP/build.log" | sed 's/^/    /' >&2
      fi
    else
      SG_STATUS="cargo not found"
    fi
  fi
  if [[ $SG_STATUS == ok && ! -x $SHARDGATE_BIN ]]; then
    SG_STATUS="binary $SHARDGATE_BIN not found"
  fi
  [[ $SG_STATUS == ok ]] || log "shardgate: $SG_STATUS -- it will be skipped, the other endpoints still run"
fi

# ----------------------------------------------------------- prepare ----
log "preparing sysbench data in $DS0_DB ($BENCH_TABLES tables x $BENCH_TABLE_SIZE rows) on $DS0_HOST:$DS0_PORT"
sysbench oltp_point_select "${SB_DS0[@]}" --tables="$BENCH_TABLES" cleanup >"$TMP/prepare.log" 2>&1 \
  || { cat "$TMP/prepare.log" >&2; die "sysbench cleanup failed"; }
PREPARED=1
sysbench oltp_point_select "${SB_DS0[@]}" --tables="$BENCH_TABLES" --table-size="$BENCH_TABLE_SIZE" \
  --threads="$BENCH_TABLES" prepare >>"$TMP/prepare.log" 2>&1 \
  || { cat "$TMP/prepare.log" >&2; die "sysbench prepare failed"; }

# The sandbox is shared: something else may restart ds0 or drop its tables
# while the benchmark runs. Check before every run; re-find mariadbd's pid and
# re-create the data set if needed, and say so in the report.
NOTES=()
ensure_ds0() {
  local what=$1 n pid
  n=$(sql "$DS0_HOST" "$DS0_PORT" "$DS0_USER" "$DS0_PASSWORD" "$DS0_DB" \
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'sbtest%'" 2>/dev/null) \
    || die "ds0 at $DS0_HOST:$DS0_PORT stopped answering (before $what)"
  if [[ -n $DB_PID && ! -r /proc/$DB_PID/stat && -z $MARIADBD_PID ]]; then
    pid=$(find_mariadbd_pid)
    NOTES+=("mariadbd was restarted before $what (pid $DB_PID -> ${pid:-?})")
    log "warning: ${NOTES[-1]}"
    DB_PID=$pid
  fi
  if [[ $n != "$BENCH_TABLES" ]]; then
    NOTES+=("the sbtest tables in $DS0_DB were gone before $what (something else reset ds0); re-created")
    log "warning: ${NOTES[-1]}"
    sysbench oltp_point_select "${SB_DS0[@]}" --tables="$BENCH_TABLES" cleanup >>"$TMP/prepare.log" 2>&1
    sysbench oltp_point_select "${SB_DS0[@]}" --tables="$BENCH_TABLES" --table-size="$BENCH_TABLE_SIZE" \
      --threads="$BENCH_TABLES" prepare >>"$TMP/prepare.log" 2>&1 \
      || { tail -n 20 "$TMP/prepare.log" >&2; die "sysbench prepare failed"; }
  fi
}

# ----------------------------------------------------------- haproxy ----
if want haproxy; then
  port_busy "$HAPROXY_PORT" && die "port $HAPROXY_PORT is already in use (pid $(port_pids "$HAPROXY_PORT")); set HAPROXY_PORT"
  cat >"$TMP/haproxy.cfg" <<EOF
# Generated by bench/passthrough.sh: a plain TCP byte pump, no checks, no logs.
global
    nbthread $HAPROXY_NBTHREAD
    maxconn 4096

defaults
    mode tcp
    timeout connect 5s
    timeout client  1h
    timeout server  1h

listen ds0
    bind 127.0.0.1:$HAPROXY_PORT
    server ds0 $DS0_HOST:$DS0_PORT
EOF
  haproxy -c -q -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 || { cat "$TMP/haproxy.log" >&2; die "bad haproxy config"; }
  haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
  HAP_PID=$!
  for _ in $(seq 50); do
    sql 127.0.0.1 "$HAPROXY_PORT" "$DS0_USER" "$DS0_PASSWORD" "$DS0_DB" "SELECT 1" >/dev/null 2>&1 && break
    kill -0 "$HAP_PID" 2>/dev/null || break
    sleep 0.2
  done
  sql 127.0.0.1 "$HAPROXY_PORT" "$DS0_USER" "$DS0_PASSWORD" "$DS0_DB" "SELECT 1" >/dev/null 2>&1 \
    || { cat "$TMP/haproxy.log" >&2; die "HAProxy did not come up on 127.0.0.1:$HAPROXY_PORT"; }
  log "haproxy pid $HAP_PID on 127.0.0.1:$HAPROXY_PORT (nbthread $HAPROXY_NBTHREAD) -> $DS0_HOST:$DS0_PORT"
fi

# --------------------------------------------------------- shardgate ----
if want shardgate && [[ $SG_STATUS == ok ]]; then
  ds0_url="mysql://$DS0_USER${DS0_PASSWORD:+:$DS0_PASSWORD}@$DS0_HOST:$DS0_PORT/$DS0_DB"
  awk -v listen="127.0.0.1:$SHARDGATE_PORT" -v admin="127.0.0.1:$SHARDGATE_ADMIN_PORT" -v url="$ds0_url" \
      -v threads="$SHARDGATE_WORKER_THREADS" '
    /^[[:space:]]*\[/ { section = $0; gsub(/[[:space:]]/, "", section) }
    /^[[:space:]]*mysql_listen[[:space:]]*=/ && section == "[server]" { print "mysql_listen = \"" listen "\""; print "worker_threads = " threads; next }
    /^[[:space:]]*admin_listen[[:space:]]*=/ && section == "[server]" { print "admin_listen = \"" admin "\""; next }
    /^[[:space:]]*url[[:space:]]*=/ && section == "[data_sources.ds0]" { print "url = \"" url "\""; next }
    { print }' "$SHARDGATE_CONFIG" >"$TMP/shardgate.toml" || die "cannot read $SHARDGATE_CONFIG"
  if [[ -z $SG_PORT_GIVEN ]] && { port_busy "$SHARDGATE_PORT" || port_busy "$SHARDGATE_ADMIN_PORT"; }; then
    # Default ports taken (typically a shardgate someone else runs on the
    # shared machine): the port does not matter for the measurement.
    busy=
    for p in "$SHARDGATE_PORT" "$SHARDGATE_ADMIN_PORT"; do
      port_busy "$p" && busy+=" $p (pid $(port_pids "$p" | paste -sd, -))"
    done
    read -r SHARDGATE_PORT SHARDGATE_ADMIN_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
    log "default shardgate port(s) in use:$busy; using 127.0.0.1:$SHARDGATE_PORT and admin $SHARDGATE_ADMIN_PORT instead"
    awk -v listen="127.0.0.1:$SHARDGATE_PORT" -v admin="127.0.0.1:$SHARDGATE_ADMIN_PORT" '
      /^[[:space:]]*mysql_listen[[:space:]]*=/ { print "mysql_listen = \"" listen "\""; next }
      /^[[:space:]]*admin_listen[[:space:]]*=/ { print "admin_listen = \"" admin "\""; next }
      { print }' "$TMP/shardgate.toml" >"$TMP/shardgate.toml.new" && mv "$TMP/shardgate.toml.new" "$TMP/shardgate.toml"
  fi
  if port_busy "$SHARDGATE_PORT" || port_busy "$SHARDGATE_ADMIN_PORT"; then
    SG_STATUS="port $SHARDGATE_PORT or $SHARDGATE_ADMIN_PORT already in use (pids: $(port_pids "$SHARDGATE_PORT") $(port_pids "$SHARDGATE_ADMIN_PORT")); set SHARDGATE_PORT / SHARDGATE_ADMIN_PORT"
  else
    "$SHARDGATE_BIN" --config "$TMP/shardgate.toml" >"$TMP/shardgate.log" 2>&1 &
    SG_PID=$!
    for _ in $(seq 75); do
      sql 127.0.0.1 "$SHARDGATE_PORT" "$SHARDGATE_USER" "$SHARDGATE_PASSWORD" "$SHARDGATE_DB" "SELECT 1" >/dev/null 2>&1 && break
      kill -0 "$SG_PID" 2>/dev/null || break
      sleep 0.2
    done
    if ! sql 127.0.0.1 "$SHARDGATE_PORT" "$SHARDGATE_USER" "$SHARDGATE_PASSWORD" "$SHARDGATE_DB" "SELECT 1" >/dev/null 2>"$TMP/err"; then
      if kill -0 "$SG_PID" 2>/dev/null; then
        SG_STATUS="started but does not answer SELECT 1 on 127.0.0.1:$SHARDGATE_PORT db $SHARDGATE_DB: $(tr '\n' ' ' <"$TMP/err")"
        kill "$SG_PID" 2>/dev/null; wait "$SG_PID" 2>/dev/null
      else
        wait "$SG_PID" 2>/dev/null
        SG_STATUS="exited at start-up (status $?)"
      fi
      SG_PID=
      log "shardgate $SG_STATUS; log tail:"; tail -n 15 "$TMP/shardgate.log" | sed 's/^/    /' >&2
    else
      n=$(sql 127.0.0.1 "$SHARDGATE_PORT" "$SHARDGATE_USER" "$SHARDGATE_PASSWORD" "$SHARDGATE_DB" \
            "SELECT COUNT(*) FROM sbtest1" 2>&1)
      [[ $n == "$BENCH_TABLE_SIZE" ]] || log "warning: SELECT COUNT(*) FROM sbtest1 through shardgate gave: $n"
      log "shardgate pid $SG_PID on 127.0.0.1:$SHARDGATE_PORT (db $SHARDGATE_DB -> $ds0_url)"
    fi
  fi
  [[ $SG_STATUS == ok ]] || log "shardgate: $SG_STATUS -- skipped"
fi

# -------------------------------------------------------------- runs ----
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$BENCH_RESULTS_DIR" || die "cannot create $BENCH_RESULTS_DIR"
OUT="$BENCH_RESULTS_DIR/passthrough-$STAMP.txt"
RAW="$BENCH_RESULTS_DIR/passthrough-$STAMP.log"
RECORDS="$TMP/records.jsonl"
: >"$RAW"

endpoints=()
for e in direct haproxy shardgate; do
  want "$e" || continue
  [[ $e == shardgate && $SG_STATUS != ok ]] && continue
  endpoints+=("$e")
done
n_tests=$(wc -w <<<"$BENCH_TESTS"); n_threads=$(wc -w <<<"$BENCH_THREADS")
total=$(( n_tests * n_threads * ${#endpoints[@]} ))
log "running $total runs of ${BENCH_WARMUP}s warm-up + ${BENCH_SECONDS}s, db-ps-mode=$BENCH_PS_MODE (about $(( total * (BENCH_SECONDS + BENCH_WARMUP + 1) / 60 + 1 )) min)"

i=0
for test in $BENCH_TESTS; do
  for threads in $BENCH_THREADS; do
    for ep in "${endpoints[@]}"; do
      i=$((i + 1))
      case $ep in
        direct)    conn=("${SB_DS0[@]}"); proxy_pid= ;;
        haproxy)   conn=(--mysql-host=127.0.0.1 --mysql-port="$HAPROXY_PORT" --mysql-user="$DS0_USER"
                         --mysql-password="$DS0_PASSWORD" --mysql-db="$DS0_DB"); proxy_pid=$HAP_PID ;;
        shardgate) conn=(--mysql-host=127.0.0.1 --mysql-port="$SHARDGATE_PORT" --mysql-user="$SHARDGATE_USER"
                         --mysql-password="$SHARDGATE_PASSWORD" --mysql-db="$SHARDGATE_DB"); proxy_pid=$SG_PID ;;
      esac
      if [[ -n $proxy_pid ]] && ! kill -0 "$proxy_pid" 2>/dev/null; then
        log "warning: $ep (pid $proxy_pid) is no longer running"
        [[ $ep == shardgate ]] && tail -n 15 "$TMP/shardgate.log" | sed 's/^/    /' >&2
      fi
      ensure_ds0 "$test $threads thr $ep"
      printf '[bench] %2d/%d %-18s %3s thr  %-9s ' "$i" "$total" "$test" "$threads" "$ep" >&2
      if (( BENCH_WARMUP > 0 )); then
        run_bg sysbench "$test" "${SB_COMMON[@]}" "${conn[@]}" --threads="$threads" --time="$BENCH_WARMUP" run \
          >>"$TMP/warmup.log" 2>&1
      fi
      run_bg python3 "$BENCH_DIR/sbtool.py" run --records "$RECORDS" --raw "$RAW" --clk-tck "$CLK_TCK" \
        --test "$test" --threads "$threads" --endpoint "$ep" \
        ${proxy_pid:+--proxy-pid "$proxy_pid"} ${DB_PID:+--db-pid "$DB_PID"} -- \
        sysbench "$test" "${SB_COMMON[@]}" "${conn[@]}" --threads="$threads" --time="$BENCH_SECONDS" run >&2 \
        || die "sbtool.py failed"
    done
  done
done

# ------------------------------------------------------------ report ----
{
  echo "ShardGate pass-through benchmark -- $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo "commit:    $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)$( [[ -n $(git -C "$REPO" status --porcelain 2>/dev/null | head -1) ]] && echo ' (dirty tree)')"
  echo "machine:   $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load avg $(cut -d' ' -f1-3 /proc/loadavg) at end"
  echo "tools:     $(sysbench --version), $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3), MariaDB $DB_VERSION"
  echo "settings:  ${BENCH_SECONDS}s per run after ${BENCH_WARMUP}s warm-up, --db-ps-mode=$BENCH_PS_MODE, $BENCH_TABLES tables x $BENCH_TABLE_SIZE rows"
  echo "direct:    mariadbd pid ${DB_PID:-?} at $DS0_HOST:$DS0_PORT db $DS0_DB"
  want haproxy && echo "haproxy:   127.0.0.1:$HAPROXY_PORT, mode tcp, nbthread $HAPROXY_NBTHREAD, no health checks, no logging"
  if want shardgate; then
    if [[ $SG_STATUS == ok ]]; then
      echo "shardgate: 127.0.0.1:$SHARDGATE_PORT db $SHARDGATE_DB, $SHARDGATE_BIN, worker_threads $SHARDGATE_WORKER_THREADS, RUST_LOG=$RUST_LOG"
    else
      echo "shardgate: NOT MEASURED -- $SG_STATUS"
    fi
  fi
  echo "columns:   QPS = sysbench queries/s (read_only counts BEGIN/COMMIT too); p95 = per sysbench event"
  echo "           (one query for point_select, one 16-query transaction for read_only); µs/q = CPU"
  echo "           (utime+stime) of the process during the run / queries; client = sysbench itself."
  echo "reference: issue 2 measured direct point select ~82-88k QPS @8 thr (mariadbd ~12 µs/q),"
  echo "           HAProxy ~43k (~50% of direct) at ~20 µs proxy CPU/q on this kind of 2-core machine."
  echo
  python3 "$BENCH_DIR/sbtool.py" report --records "$RECORDS"
  for note in "${NOTES[@]}"; do echo "  note: $note"; done
  echo
  echo "raw sysbench output: $RAW"
} | tee "$OUT"
echo "results written to $OUT"
exit 0
