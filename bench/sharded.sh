#!/usr/bin/env bash
# ShardGate sharded benchmark (issue 3, "Proof": the benchmark bullet).
#
# sysbench's tables sbtest1..N are sharded by `id` over ds0..ds3, 4 x 4
# physical tables each (sbtest1_0..3 on every data source):
#   database = { column = "id", algorithm = "mod", count = 4 }
#   table    = { column = "id", expression = "sbtest1_${(id / 4) % 4}" }
# The data is prepared THROUGH ShardGate (sysbench --auto_inc=off prepare:
# ShardGate fans out the CREATE TABLE / CREATE INDEX and splits the multi-row
# INSERTs by id), checked in place (every row on the physical table the rules
# name), and copied to one plain database on ds0's server (DIRECT_DB) for the
# unsharded endpoints. One run then drives sysbench oltp_point_select and
# oltp_read_only at 8 and 32 threads against:
#   direct     ds0's mariadbd, plain tables           (127.0.0.1:13306, db $DIRECT_DB)
#   haproxy    HAProxy mode tcp in front of it        (127.0.0.1:$HAPROXY_PORT, db $DIRECT_DB)
#   shardgate  shardgate, sharded tables on ds0..ds3  (free port, db wework)
# and prints QPS, p95, ratios, CPU µs per query (proxy; mariadbd: ds0 for
# direct/HAProxy, the sum of the four primaries for ShardGate) and the target
# lines of issue 3. Before the runs, the statement shapes of oltp_read_only
# are run once through ShardGate and against the plain copy and compared
# (text protocol), so that a refusal (1235) or a wrong answer is named with
# its SQL. After the runs, sbtest1 is topped up to BENCH_MEM_ROWS rows
# (straight into the physical tables), ShardGate is restarted, and its peak
# memory (VmHWM) is measured around
#   SELECT * FROM sbtest1 ORDER BY id LIMIT <BENCH_MEM_ROWS - 10>, 10
#
# Exit status: 0 when the benchmark ran (a missed target, a refused or wrong
# statement are reported, not failures); 1 on a setup error (tools missing, a
# data source unreachable, shardgate would not build/start, prepare failed);
# 2 on a usage error.

set -uo pipefail

usage() {
  cat <<'EOF'
Usage: bench/sharded.sh [-h|--help]

Needs: the sandbox up (docker/sandbox.sh up: primaries ds0..ds3 on
127.0.0.1:13306..13309), sysbench, haproxy, the mariadb client, python3,
cargo (or SHARDGATE_BUILD=0 and a built SHARDGATE_BIN). Run from anywhere.

Environment (defaults in brackets):
  BENCH_SECONDS        measured seconds per run                      [15]
  BENCH_WARMUP         unmeasured warm-up seconds before each run    [2]
  BENCH_PS_MODE        sysbench --db-ps-mode: auto | disable         [auto]
  BENCH_TESTS          sysbench tests        [oltp_point_select oltp_read_only]
  BENCH_THREADS        thread counts                                 [8 32]
  BENCH_TARGET_ROUNDS  haproxy/shardgate pairs of oltp_point_select at 8
                       threads, run back to back, whose median ratio is
                       the target's verdict (this machine's speed drifts
                       by ~10% within minutes)                        [3]
  BENCH_ONE_SERVER     1 = in those rounds, also a second ShardGate whose
                       ds1..ds3 are copies on ds0's server (databases
                       <DIRECT_DB>_ds1..3): the same sharding without four
                       mariadbd processes sharing the CPUs; a diagnostic
                       line, not the target                            [1]
  BENCH_ENDPOINTS      subset of: direct haproxy shardgate   [all three]
  BENCH_TABLES / BENCH_TABLE_SIZE   sysbench data set                [4 / 10000]
  BENCH_MEM_ROWS       rows of sbtest1 for the peak-memory query; 0 = skip
                       the memory measurement                     [1000000]
  BENCH_CHECK_RANGES   ranges per statement shape in the differential
                       check of oltp_read_only's statements           [5]
  BENCH_KEEP_TABLES    1 = leave the tables (sharded and plain) at the end [0]
  BENCH_RESULTS_DIR    where the report goes                  [bench/results]
  DS_HOST DS_USER DS_PASSWORD   the data sources' primaries [127.0.0.1 root ""]
  DS_PORTS             ports of ds0..ds3      [13306 13307 13308 13309]
  DS_DBS               their databases        [ds0 ds1 ds2 ds3]
  DIRECT_DB            plain copy's database on ds0's server (created and
                       dropped by the script)                       [sgbench]
  HAPROXY_PORT         HAProxy listen port                           [13401]
  HAPROXY_NBTHREAD     HAProxy nbthread                              [1]
  SHARDGATE_BUILD      1 = cargo build --release -p shardgate-proxy first [1]
                       (honours CARGO_TARGET_DIR)
  SHARDGATE_BIN        proxy binary [${CARGO_TARGET_DIR:-target}/release/shardgate]
  SHARDGATE_CONFIG     base config (data sources' urls are rewritten to
                       DS_*, the sbtest tables appended) [examples/wework.toml]
  SHARDGATE_PORT SHARDGATE_ADMIN_PORT                [two free ports]
  SHARDGATE_POOL_MAX_SIZE  pool = { max_size = N } for each data source
                       [40]. oltp_read_only holds one connection per data
                       source for the whole transaction, so each pool must
                       have room for every sysbench thread (32) at once, as
                       a direct server gives each client its own connection;
                       the config's default (20) would exhaust (error 1040).
                       Empty: the config's default.
  RUST_LOG             passed to shardgate                           [warn]

Defaults take about 6 minutes (12 runs + 4 target rounds of 2+15 s, prepare, memory phase)
plus the cargo build. Quick check:
  BENCH_SECONDS=5 BENCH_WARMUP=1 BENCH_THREADS=8 BENCH_MEM_ROWS=100000 bench/sharded.sh
EOF
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")

BENCH_SECONDS=${BENCH_SECONDS:-15}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_PS_MODE=${BENCH_PS_MODE:-auto}
BENCH_TESTS=${BENCH_TESTS:-oltp_point_select oltp_read_only}
BENCH_THREADS=${BENCH_THREADS:-8 32}
BENCH_TARGET_ROUNDS=${BENCH_TARGET_ROUNDS:-3}
BENCH_ONE_SERVER=${BENCH_ONE_SERVER:-1}
BENCH_ENDPOINTS=${BENCH_ENDPOINTS:-direct haproxy shardgate}
BENCH_TABLES=${BENCH_TABLES:-4}
BENCH_TABLE_SIZE=${BENCH_TABLE_SIZE:-10000}
BENCH_MEM_ROWS=${BENCH_MEM_ROWS:-1000000}
BENCH_CHECK_RANGES=${BENCH_CHECK_RANGES:-5}
BENCH_KEEP_TABLES=${BENCH_KEEP_TABLES:-0}
BENCH_RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
DS_HOST=${DS_HOST:-127.0.0.1}
DS_USER=${DS_USER:-root}
DS_PASSWORD=${DS_PASSWORD:-}
read -r -a DS_PORT <<<"${DS_PORTS:-13306 13307 13308 13309}"
read -r -a DS_DB <<<"${DS_DBS:-ds0 ds1 ds2 ds3}"
DIRECT_DB=${DIRECT_DB:-sgbench}
HAPROXY_PORT=${HAPROXY_PORT:-13401}
HAPROXY_NBTHREAD=${HAPROXY_NBTHREAD:-1}
SHARDGATE_BUILD=${SHARDGATE_BUILD:-1}
SHARDGATE_BIN=${SHARDGATE_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/shardgate}
SHARDGATE_CONFIG=${SHARDGATE_CONFIG:-$REPO/examples/wework.toml}
SHARDGATE_PORT=${SHARDGATE_PORT:-}
SHARDGATE_ADMIN_PORT=${SHARDGATE_ADMIN_PORT:-}
SHARDGATE_POOL_MAX_SIZE=${SHARDGATE_POOL_MAX_SIZE-40}
SG_USER=root SG_PASSWORD= SG_DB=wework
export RUST_LOG=${RUST_LOG:-warn}
NODES=4 TABLES_PER_NODE=4
MEM_TARGET_MIB=64

die() { echo "sharded.sh: setup error: $*" >&2; exit 1; }
log() { echo "[bench] $*" >&2; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_uint "$BENCH_SECONDS" && (( BENCH_SECONDS > 0 )) || { echo "BENCH_SECONDS must be a positive integer" >&2; exit 2; }
is_uint "$BENCH_WARMUP" || { echo "BENCH_WARMUP must be an integer" >&2; exit 2; }
is_uint "$BENCH_TABLES" && (( BENCH_TABLES > 0 )) || { echo "BENCH_TABLES must be a positive integer" >&2; exit 2; }
is_uint "$BENCH_TABLE_SIZE" && (( BENCH_TABLE_SIZE >= 200 )) || { echo "BENCH_TABLE_SIZE must be an integer >= 200" >&2; exit 2; }
is_uint "$BENCH_MEM_ROWS" || { echo "BENCH_MEM_ROWS must be an integer" >&2; exit 2; }
(( BENCH_MEM_ROWS == 0 || BENCH_MEM_ROWS >= BENCH_TABLE_SIZE )) || { echo "BENCH_MEM_ROWS must be 0 or >= BENCH_TABLE_SIZE" >&2; exit 2; }
is_uint "$BENCH_CHECK_RANGES" || { echo "BENCH_CHECK_RANGES must be an integer" >&2; exit 2; }
case "$BENCH_PS_MODE" in auto|disable) ;; *) echo "BENCH_PS_MODE must be auto or disable" >&2; exit 2 ;; esac
for t in $BENCH_THREADS; do is_uint "$t" && (( t > 0 )) || { echo "bad BENCH_THREADS: $t" >&2; exit 2; }; done
for e in $BENCH_ENDPOINTS; do case "$e" in direct|haproxy|shardgate) ;; *) echo "bad BENCH_ENDPOINTS entry: $e" >&2; exit 2 ;; esac; done
(( ${#DS_PORT[@]} == NODES && ${#DS_DB[@]} == NODES )) || { echo "DS_PORTS and DS_DBS must list 4 entries each" >&2; exit 2; }
[[ $DIRECT_DB =~ ^[A-Za-z0-9_]+$ ]] || { echo "bad DIRECT_DB" >&2; exit 2; }
[[ -z $SHARDGATE_POOL_MAX_SIZE ]] || { is_uint "$SHARDGATE_POOL_MAX_SIZE" && (( SHARDGATE_POOL_MAX_SIZE > 0 )); } \
  || { echo "SHARDGATE_POOL_MAX_SIZE must be a positive integer" >&2; exit 2; }
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
  MYSQL_PWD=$pw "$MYSQL" --no-defaults --protocol=TCP -h"$h" -P"$p" -u"$u" --connect-timeout=5 -N -B "$db" -e "$*"
}
ds_sql()  { local i=$1; shift; sql "$DS_HOST" "${DS_PORT[$i]}" "$DS_USER" "$DS_PASSWORD" "${DS_DB[$i]}" "$@"; }
dir_sql() { sql "$DS_HOST" "${DS_PORT[0]}" "$DS_USER" "$DS_PASSWORD" "$DIRECT_DB" "$@"; }
sg_sql()  { sql 127.0.0.1 "$SHARDGATE_PORT" "$SG_USER" "$SG_PASSWORD" "$SG_DB" "$@"; }
port_pids() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }
port_busy() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }
free_ports() { python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))'; }

# ------------------------------------------------------ temp + cleanup ----
TMP=$(mktemp -d /tmp/shardgate-sharded.XXXXXX)
HAP_PID= SG_PID= SG1_PID= RUN_PID= MW_PID= SG_PREPARED=0 DIRECT_CREATED=0 ONE_CREATED=0
physical_tables() { local i t; for i in $(seq 1 "$BENCH_TABLES"); do for t in $(seq 0 $((TABLES_PER_NODE - 1))); do echo "sbtest${i}_$t"; done; done; }
drop_physical() {
  local n list
  list=$(physical_tables | sed 's/^/`/; s/$/`/' | paste -sd, -)
  for n in $(seq 0 $((NODES - 1))); do
    ds_sql "$n" "DROP TABLE IF EXISTS $list" >>"$TMP/prepare.log" 2>&1 \
      || log "warning: dropping the sbtest*_* tables on ${DS_DB[$n]} failed (see $TMP/prepare.log)"
  done
}
stop_pid() {
  local pid=$1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null
  for _ in $(seq 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in $MW_PID $RUN_PID $SG_PID $SG1_PID $HAP_PID; do stop_pid "$pid"; done
  if [[ $BENCH_KEEP_TABLES != 1 ]]; then
    if (( SG_PREPARED )); then
      log "dropping the sharded sbtest tables (sbtest*_0..3 on ${DS_DB[*]})"
      drop_physical
    fi
    if (( ONE_CREATED )); then
      for n in $(seq 1 $((NODES - 1))); do
        sql "$DS_HOST" "${DS_PORT[0]}" "$DS_USER" "$DS_PASSWORD" "" "DROP DATABASE IF EXISTS \`${DIRECT_DB}_ds$n\`" >/dev/null 2>&1 \
          || log "warning: DROP DATABASE ${DIRECT_DB}_ds$n failed"
      done
    fi
    if (( DIRECT_CREATED )); then
      log "dropping database $DIRECT_DB on ${DS_HOST}:${DS_PORT[0]}"
      sql "$DS_HOST" "${DS_PORT[0]}" "$DS_USER" "$DS_PASSWORD" "" "DROP DATABASE IF EXISTS \`$DIRECT_DB\`" >/dev/null 2>&1 \
        || log "warning: DROP DATABASE $DIRECT_DB failed"
    fi
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
run_bg() { "$@" & RUN_PID=$!; wait "$RUN_PID"; local rc=$?; RUN_PID=; return "$rc"; }
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------ data sources ----
DB_PIDS=()
for n in $(seq 0 $((NODES - 1))); do
  ds_sql "$n" "SELECT 1" >/dev/null 2>"$TMP/err" \
    || die "cannot reach ds$n at $DS_HOST:${DS_PORT[$n]} db ${DS_DB[$n]}: $(tr '\n' ' ' <"$TMP/err") (start the sandbox: docker/sandbox.sh up)"
  pid=$(port_pids "${DS_PORT[$n]}" | head -1)
  if [[ -n $pid && -r /proc/$pid/stat ]]; then
    DB_PIDS+=("$pid")
  else
    log "warning: no pid for the server on port ${DS_PORT[$n]}; mariadbd CPU columns stay empty"
  fi
done
(( ${#DB_PIDS[@]} == NODES )) || DB_PIDS=()
DB_PID0=${DB_PIDS[0]:-}
DB_VERSION=$(ds_sql 0 "SELECT VERSION()")

SB_COMMON=(--db-driver=mysql --tables="$BENCH_TABLES" --table-size="$BENCH_TABLE_SIZE"
           --db-ps-mode="$BENCH_PS_MODE" --mysql-ssl=off --report-interval=0)
SB_DIRECT=(--mysql-host="$DS_HOST" --mysql-port="${DS_PORT[0]}" --mysql-user="$DS_USER"
           --mysql-password="$DS_PASSWORD" --mysql-db="$DIRECT_DB")

# ------------------------------------------------------- shardgate build ----
if [[ $SHARDGATE_BUILD == 1 ]]; then
  command -v cargo >/dev/null || die "cargo not found (or set SHARDGATE_BUILD=0 and SHARDGATE_BIN)"
  log "building shardgate (cargo build --release -p shardgate-proxy) ..."
  (cd "$REPO" && cargo build --release -p shardgate-proxy) >"$TMP/build.log" 2>&1 \
    || { tail -n 20 "$TMP/build.log" >&2; die "cargo build --release -p shardgate-proxy failed"; }
fi
[[ -x $SHARDGATE_BIN ]] || die "shardgate binary $SHARDGATE_BIN not found"

# ------------------------------------------------------ shardgate config ----
if [[ -z $SHARDGATE_PORT || -z $SHARDGATE_ADMIN_PORT ]]; then
  read -r p1 p2 < <(free_ports)
  SHARDGATE_PORT=${SHARDGATE_PORT:-$p1}
  SHARDGATE_ADMIN_PORT=${SHARDGATE_ADMIN_PORT:-$p2}
fi
{
  awk -v listen="127.0.0.1:$SHARDGATE_PORT" -v admin="127.0.0.1:$SHARDGATE_ADMIN_PORT" \
      -v host="$DS_HOST" -v user="$DS_USER" -v pw="$DS_PASSWORD" \
      -v ports="${DS_PORT[*]}" -v dbs="${DS_DB[*]}" -v pool="$SHARDGATE_POOL_MAX_SIZE" '
    BEGIN { split(ports, P, " "); split(dbs, D, " ") }
    /^[[:space:]]*\[/ { section = $0; gsub(/[[:space:]]/, "", section) }
    /^[[:space:]]*mysql_listen[[:space:]]*=/ && section == "[server]" { print "mysql_listen = \"" listen "\""; print "read_write_splitting = false"; next }
    /^[[:space:]]*admin_listen[[:space:]]*=/ && section == "[server]" { print "admin_listen = \"" admin "\""; next }
    /^[[:space:]]*url[[:space:]]*=/ && section ~ /^\[data_sources\.ds[0-3]\]$/ {
      i = substr(section, 17, 1) + 1
      print "url = \"mysql://" user (pw != "" ? ":" pw : "") "@" host ":" P[i] "/" D[i] "\""
      if (pool != "") print "pool = { max_size = " pool " }"
      next }
    { print }' "$SHARDGATE_CONFIG" || exit 1
  for i in $(seq 1 "$BENCH_TABLES"); do
    cat <<EOF

[tables.sbtest$i]
nodes = "ds\${0..3}.sbtest${i}_\${0..3}"
database = { column = "id", algorithm = "mod", count = 4 }
table = { column = "id", expression = "sbtest${i}_\${(id / 4) % 4}" }
EOF
  done
} >"$TMP/shardgate.toml" || die "cannot read $SHARDGATE_CONFIG"

# Starts shardgate with config $1, logging to $2, serving on port $3; sets STARTED_PID.
start_proxy() {
  local config=$1 logfile=$2 port=$3
  port_busy "$port" && die "port $port is in use (pid $(port_pids "$port"))"
  "$SHARDGATE_BIN" --config "$config" >>"$logfile" 2>&1 &
  STARTED_PID=$!
  for _ in $(seq 75); do
    sql 127.0.0.1 "$port" "$SG_USER" "$SG_PASSWORD" "$SG_DB" "SELECT 1" >/dev/null 2>&1 && break
    kill -0 "$STARTED_PID" 2>/dev/null || break
    sleep 0.2
  done
  if ! sql 127.0.0.1 "$port" "$SG_USER" "$SG_PASSWORD" "$SG_DB" "SELECT 1" >/dev/null 2>"$TMP/err"; then
    log "shardgate log tail:"; tail -n 15 "$logfile" | sed 's/^/    /' >&2
    die "shardgate did not answer SELECT 1 on 127.0.0.1:$port: $(tr '\n' ' ' <"$TMP/err")"
  fi
}
start_shardgate() {
  start_proxy "$TMP/shardgate.toml" "$TMP/shardgate.log" "$SHARDGATE_PORT"
  SG_PID=$STARTED_PID
}
start_shardgate
log "shardgate pid $SG_PID on 127.0.0.1:$SHARDGATE_PORT (db $SG_DB), sbtest1..$BENCH_TABLES sharded 4 x 4 over ${DS_DB[*]}"

SB_SG=(--mysql-host=127.0.0.1 --mysql-port="$SHARDGATE_PORT" --mysql-user="$SG_USER"
       --mysql-password="$SG_PASSWORD" --mysql-db="$SG_DB")
NOTES=()
FINDINGS=()

# ----------------------------------------------- prepare through shardgate ----
log "preparing $BENCH_TABLES tables x $BENCH_TABLE_SIZE rows THROUGH shardgate (sysbench --auto_inc=off prepare)"
SG_PREPARED=1
drop_physical
sysbench oltp_read_only "${SB_SG[@]}" --tables="$BENCH_TABLES" cleanup >>"$TMP/prepare.log" 2>&1 \
  || { tail -n 20 "$TMP/prepare.log" >&2; die "sysbench cleanup (DROP TABLE IF EXISTS sbtestN) through shardgate failed"; }
t0=$(date +%s.%N)
sysbench oltp_read_only "${SB_SG[@]}" --auto_inc=off --tables="$BENCH_TABLES" --table-size="$BENCH_TABLE_SIZE" \
  --threads="$BENCH_TABLES" prepare >>"$TMP/prepare.log" 2>&1 \
  || { tail -n 20 "$TMP/prepare.log" >&2; die "sysbench prepare through shardgate failed"; }
PREP_S=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
log "prepared through shardgate in ${PREP_S}s"

# Placement: every row where the rules put it, and all rows there.
log "checking placement of every row (directly on the 16 physical tables of each sbtest table)"
total_rows=0 misplaced=0
for n in $(seq 0 $((NODES - 1))); do
  for tbl in $(physical_tables); do
    t=${tbl##*_}
    read -r cnt bad < <(ds_sql "$n" "SELECT COUNT(*), COALESCE(SUM(NOT (id % 4 = $n AND (id DIV 4) % 4 = $t)), 0) FROM \`$tbl\`" 2>"$TMP/err") \
      || die "reading ${DS_DB[$n]}.$tbl: $(tr '\n' ' ' <"$TMP/err")"
    total_rows=$((total_rows + cnt)) misplaced=$((misplaced + bad))
  done
done
PLACEMENT="$total_rows rows in $((NODES * TABLES_PER_NODE * BENCH_TABLES)) physical tables (want $((BENCH_TABLES * BENCH_TABLE_SIZE))), $misplaced misplaced"
log "placement: $PLACEMENT"
if (( misplaced > 0 || total_rows != BENCH_TABLES * BENCH_TABLE_SIZE )); then
  FINDINGS+=("WRONG placement after sysbench prepare through shardgate: $PLACEMENT")
fi

# ------------------------------------------------ plain copy on ds0 ----
# Copies the rows of physical table $2 on data source $1 into table $4 of
# database $3 on ds0's server.
copy_rows() {
  local n=$1 from=$2 db=$3 to=$4
  MYSQL_PWD=$DS_PASSWORD "$MYSQL" --no-defaults --protocol=TCP -h"$DS_HOST" -P"${DS_PORT[$n]}" -u"$DS_USER" \
      -N -B --raw "${DS_DB[$n]}" -e "SELECT id, k, c, pad FROM \`$from\`" \
    | MYSQL_PWD=$DS_PASSWORD "$MYSQL" --no-defaults --protocol=TCP -h"$DS_HOST" -P"${DS_PORT[0]}" -u"$DS_USER" \
      --local-infile=1 "$db" -e "LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE \`$to\` (id, k, c, pad)" \
      2>"$TMP/err" || die "copying ${DS_DB[$n]}.$from to $db.$to: $(tr '\n' ' ' <"$TMP/err")"
}
log "copying the data to $DIRECT_DB on ${DS_HOST}:${DS_PORT[0]} (plain tables)"
sql "$DS_HOST" "${DS_PORT[0]}" "$DS_USER" "$DS_PASSWORD" "" \
  "DROP DATABASE IF EXISTS \`$DIRECT_DB\`; CREATE DATABASE \`$DIRECT_DB\`" 2>"$TMP/err" \
  || die "cannot create database $DIRECT_DB: $(tr '\n' ' ' <"$TMP/err")"
DIRECT_CREATED=1
for i in $(seq 1 "$BENCH_TABLES"); do
  # The physical table's own DDL (as ShardGate created it), renamed.
  ddl=$(ds_sql 0 "SHOW CREATE TABLE \`sbtest${i}_0\`" | cut -f2- | sed "s/^CREATE TABLE \`sbtest${i}_0\`/CREATE TABLE \`sbtest$i\`/; s/\\\\n/ /g")
  dir_sql "$ddl" 2>"$TMP/err" || die "creating $DIRECT_DB.sbtest$i: $(tr '\n' ' ' <"$TMP/err")"
  for n in $(seq 0 $((NODES - 1))); do
    for t in $(seq 0 $((TABLES_PER_NODE - 1))); do
      copy_rows "$n" "sbtest${i}_$t" "$DIRECT_DB" "sbtest$i"
    done
  done
done

# Same data both ways: aggregates through shardgate (scatter + merge) vs direct.
for i in $(seq 1 "$BENCH_TABLES"); do
  q="SELECT COUNT(*), SUM(k), MIN(id), MAX(id), SUM(CRC32(c)), SUM(CRC32(pad)) FROM sbtest$i"
  d=$(dir_sql "$q" 2>&1); s=$(sg_sql "$q" 2>&1)
  if [[ $d != "$s" ]]; then
    FINDINGS+=("WRONG: '$q' through shardgate gave [$s], the plain copy [$d]")
    log "warning: ${FINDINGS[-1]}"
  fi
done
log "plain copy: $(dir_sql "SELECT COUNT(*) FROM sbtest1") rows in $DIRECT_DB.sbtest1; checksums compared"

# ------------------------- the same shards on one server (diagnostic) ----
# ds1..ds3's physical tables copied to databases <DIRECT_DB>_ds1..3 on ds0's
# server, and a second ShardGate whose ds1..ds3 point there: what the
# sharded layout costs through the proxy, apart from what four mariadbd
# processes sharing the CPUs cost the servers.
ONE_SERVER=0
if (( BENCH_ONE_SERVER )) && want haproxy && want shardgate; then
  log "diagnostic: copying ds1..ds$((NODES - 1))'s physical tables to ${DIRECT_DB}_ds1..$((NODES - 1)) on ${DS_HOST}:${DS_PORT[0]}"
  ONE_CREATED=1
  sg1_config=$TMP/shardgate-1srv.toml
  read -r SG1_PORT SG1_ADMIN_PORT < <(free_ports)
  sed -e "s#^mysql_listen = .*#mysql_listen = \"127.0.0.1:$SG1_PORT\"#" \
      -e "s#^admin_listen = .*#admin_listen = \"127.0.0.1:$SG1_ADMIN_PORT\"#" "$TMP/shardgate.toml" >"$sg1_config"
  for n in $(seq 1 $((NODES - 1))); do
    db="${DIRECT_DB}_ds$n"
    sql "$DS_HOST" "${DS_PORT[0]}" "$DS_USER" "$DS_PASSWORD" "" \
      "DROP DATABASE IF EXISTS \`$db\`; CREATE DATABASE \`$db\`" 2>"$TMP/err" \
      || die "cannot create database $db: $(tr '\n' ' ' <"$TMP/err")"
    for tbl in $(physical_tables); do
      ddl=$(ds_sql "$n" "SHOW CREATE TABLE \`$tbl\`" | cut -f2- | sed 's/\\n/ /g')
      sql "$DS_HOST" "${DS_PORT[0]}" "$DS_USER" "$DS_PASSWORD" "$db" "$ddl" 2>"$TMP/err" \
        || die "creating $db.$tbl: $(tr '\n' ' ' <"$TMP/err")"
      copy_rows "$n" "$tbl" "$db" "$tbl"
    done
    sed -i "s#@$DS_HOST:${DS_PORT[$n]}/${DS_DB[$n]}\"#@$DS_HOST:${DS_PORT[0]}/$db\"#" "$sg1_config"
  done
  start_proxy "$sg1_config" "$TMP/shardgate-1srv.log" "$SG1_PORT"
  SG1_PID=$STARTED_PID
  q="SELECT COUNT(*), SUM(k), SUM(CRC32(c)) FROM sbtest1"
  d=$(dir_sql "$q" 2>&1); s1=$(sql 127.0.0.1 "$SG1_PORT" "$SG_USER" "$SG_PASSWORD" "$SG_DB" "$q" 2>&1)
  [[ $d == "$s1" ]] || die "the one-server copy differs: '$q' gave [$s1], the plain copy [$d]"
  ONE_SERVER=1
  log "diagnostic: shardgate pid $SG1_PID on 127.0.0.1:$SG1_PORT, ds0..ds$((NODES - 1)) all on ${DS_HOST}:${DS_PORT[0]}"
fi

# --------------------------- oltp_read_only's statements, differential ----
# sysbench's shapes (oltp_common.lua), one range of 100 ids each (range_size).
log "differential check of oltp_read_only's statement shapes ($BENCH_CHECK_RANGES ranges each, text protocol)"
SHAPES=(
  "point|SELECT c FROM sbtest%T WHERE id=%A|sorted"
  "simple_range|SELECT c FROM sbtest%T WHERE id BETWEEN %A AND %B|unordered"
  "sum_range|SELECT SUM(k) FROM sbtest%T WHERE id BETWEEN %A AND %B|sorted"
  "order_range|SELECT c FROM sbtest%T WHERE id BETWEEN %A AND %B ORDER BY c|sorted"
  "distinct_range|SELECT DISTINCT c FROM sbtest%T WHERE id BETWEEN %A AND %B ORDER BY c|sorted"
)
CHECK_SUMMARY=()
RANDOM=42
for shape in "${SHAPES[@]}"; do
  IFS='|' read -r name tmpl order <<<"$shape"
  same=0 refused=0 failed=0 wrong=0
  for _ in $(seq 1 "$BENCH_CHECK_RANGES"); do
    tbl=$(( RANDOM % BENCH_TABLES + 1 ))
    a=$(( (RANDOM * 32768 + RANDOM) % (BENCH_TABLE_SIZE - 99) + 1 )); b=$((a + 99))
    q=${tmpl//%T/$tbl}; q=${q//%A/$a}; q=${q//%B/$b}
    d=$(dir_sql "$q" 2>&1); drc=$?
    s=$(sg_sql "$q" 2>&1); src=$?
    if [[ $order == unordered ]]; then d=$(sort <<<"$d"); s=$(sort <<<"$s"); fi
    if (( src != 0 )); then
      if [[ $s == *"ERROR 1235"* ]]; then
        refused=$((refused + 1)); FINDINGS+=("REFUSED ($name): $q -> $(head -c 300 <<<"$s")")
      else
        failed=$((failed + 1)); FINDINGS+=("ERROR ($name): $q -> $(head -c 300 <<<"$s")")
      fi
    elif (( drc != 0 )); then
      failed=$((failed + 1)); FINDINGS+=("direct failed ($name): $q -> $(head -c 300 <<<"$d")")
    elif [[ $d == "$s" ]]; then
      same=$((same + 1))
    else
      wrong=$((wrong + 1))
      FINDINGS+=("WRONG ($name): $q -> shardgate $(wc -l <<<"$s") lines, direct $(wc -l <<<"$d") lines; first difference: $(diff <(echo "$d") <(echo "$s") | head -3 | tr '\n' ' ' | head -c 300)")
    fi
  done
  CHECK_SUMMARY+=("$(printf '%-15s same %d  refused %d  error %d  WRONG %d' "$name" "$same" "$refused" "$failed" "$wrong")")
  log "  ${CHECK_SUMMARY[-1]}"
done

# ----------------------------------------------------------- haproxy ----
if want haproxy; then
  port_busy "$HAPROXY_PORT" && die "port $HAPROXY_PORT is already in use (pid $(port_pids "$HAPROXY_PORT")); set HAPROXY_PORT"
  cat >"$TMP/haproxy.cfg" <<EOF
# Generated by bench/sharded.sh: a plain TCP byte pump, no checks, no logs.
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
    server ds0 $DS_HOST:${DS_PORT[0]}
EOF
  haproxy -c -q -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 || { cat "$TMP/haproxy.log" >&2; die "bad haproxy config"; }
  haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
  HAP_PID=$!
  for _ in $(seq 50); do
    sql 127.0.0.1 "$HAPROXY_PORT" "$DS_USER" "$DS_PASSWORD" "$DIRECT_DB" "SELECT 1" >/dev/null 2>&1 && break
    kill -0 "$HAP_PID" 2>/dev/null || break
    sleep 0.2
  done
  sql 127.0.0.1 "$HAPROXY_PORT" "$DS_USER" "$DS_PASSWORD" "$DIRECT_DB" "SELECT 1" >/dev/null 2>&1 \
    || { cat "$TMP/haproxy.log" >&2; die "HAProxy did not come up on 127.0.0.1:$HAPROXY_PORT"; }
  log "haproxy pid $HAP_PID on 127.0.0.1:$HAPROXY_PORT (nbthread $HAPROXY_NBTHREAD) -> $DS_HOST:${DS_PORT[0]}"
fi

# The sandbox is shared: check before every run that our tables are still there.
ensure_tables() {
  local what=$1 n
  n=$(dir_sql "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'sbtest%'" 2>/dev/null) \
    || die "ds0 at $DS_HOST:${DS_PORT[0]} stopped answering (before $what)"
  [[ $n == "$BENCH_TABLES" ]] || die "the tables of $DIRECT_DB are gone (before $what): something else dropped them"
  n=$(ds_sql 3 "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME REGEXP '^sbtest[0-9]+_[0-3]\$'" 2>/dev/null) \
    || die "ds3 stopped answering (before $what)"
  [[ $n == $((BENCH_TABLES * TABLES_PER_NODE)) ]] || die "sharded tables on ${DS_DB[3]} are gone (before $what): something else dropped them"
}

# -------------------------------------------------------------- runs ----
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$BENCH_RESULTS_DIR" || die "cannot create $BENCH_RESULTS_DIR"
OUT="$BENCH_RESULTS_DIR/sharded-$STAMP.txt"
RAW="$BENCH_RESULTS_DIR/sharded-$STAMP.log"
RECORDS="$TMP/records.jsonl"
: >"$RAW"

endpoints=()
for e in direct haproxy shardgate; do want "$e" && endpoints+=("$e"); done
n_tests=$(wc -w <<<"$BENCH_TESTS"); n_threads=$(wc -w <<<"$BENCH_THREADS")
total=$(( n_tests * n_threads * ${#endpoints[@]} ))
log "running $total runs of ${BENCH_WARMUP}s warm-up + ${BENCH_SECONDS}s, db-ps-mode=$BENCH_PS_MODE (about $(( total * (BENCH_SECONDS + BENCH_WARMUP + 1) / 60 + 1 )) min)"

# Sets conn, proxy_pid and db_args for endpoint $1.
endpoint_args() {
  local ep=$1 p
  db_args=()
  case $ep in
    direct)    conn=("${SB_DIRECT[@]}"); proxy_pid= ; [[ -n $DB_PID0 ]] && db_args=(--db-pid "$DB_PID0") ;;
    haproxy)   conn=(--mysql-host=127.0.0.1 --mysql-port="$HAPROXY_PORT" --mysql-user="$DS_USER"
                     --mysql-password="$DS_PASSWORD" --mysql-db="$DIRECT_DB"); proxy_pid=$HAP_PID
               [[ -n $DB_PID0 ]] && db_args=(--db-pid "$DB_PID0") ;;
    shardgate) conn=("${SB_SG[@]}"); proxy_pid=$SG_PID
               for p in "${DB_PIDS[@]}"; do db_args+=(--db-pid "$p"); done ;;
    shardgate-1srv)
               conn=(--mysql-host=127.0.0.1 --mysql-port="$SG1_PORT" --mysql-user="$SG_USER"
                     --mysql-password="$SG_PASSWORD" --mysql-db="$SG_DB"); proxy_pid=$SG1_PID
               [[ -n $DB_PID0 ]] && db_args=(--db-pid "$DB_PID0") ;;
  esac
  if [[ -n $proxy_pid ]] && ! kill -0 "$proxy_pid" 2>/dev/null; then
    log "warning: $ep (pid $proxy_pid) is no longer running"
    [[ $ep == shardgate ]] && tail -n 15 "$TMP/shardgate.log" | sed 's/^/    /' >&2
  fi
}

# One measured run (after a warm-up) of test $1 with $2 threads against
# endpoint $3 (endpoint_args called), recorded as round $4.
measure() {
  local test=$1 threads=$2 ep=$3 round=$4
  if (( BENCH_WARMUP > 0 )); then
    run_bg sysbench "$test" "${SB_COMMON[@]}" "${conn[@]}" --threads="$threads" --time="$BENCH_WARMUP" run \
      >>"$TMP/warmup.log" 2>&1
  fi
  run_bg python3 "$BENCH_DIR/sbtool.py" run --records "$RECORDS" --raw "$RAW" --clk-tck "$CLK_TCK" \
    --test "$test" --threads "$threads" --endpoint "$ep" --round "$round" \
    ${proxy_pid:+--proxy-pid "$proxy_pid"} "${db_args[@]}" -- \
    sysbench "$test" "${SB_COMMON[@]}" "${conn[@]}" --threads="$threads" --time="$BENCH_SECONDS" run >&2 \
    || die "sbtool.py failed"
}

i=0
for test in $BENCH_TESTS; do
  for threads in $BENCH_THREADS; do
    for ep in "${endpoints[@]}"; do
      i=$((i + 1))
      endpoint_args "$ep"
      ensure_tables "$test $threads thr $ep"
      printf '[bench] %2d/%d %-18s %3s thr  %-9s ' "$i" "$total" "$test" "$threads" "$ep" >&2
      measure "$test" "$threads" "$ep" 1
    done
  done
done
# More back-to-back haproxy/shardgate pairs of the target measurement (in
# round 1, the pair of the runs above), and the one-server diagnostic.
if want haproxy && want shardgate && [[ " $BENCH_TESTS " == *" oltp_point_select "* && " $BENCH_THREADS " == *" 8 "* ]]; then
  for round in $(seq 1 "$BENCH_TARGET_ROUNDS"); do
    eps=(haproxy shardgate)
    (( round == 1 )) && eps=()
    (( ONE_SERVER )) && eps+=(shardgate-1srv)
    for ep in "${eps[@]}"; do
      endpoint_args "$ep"
      ensure_tables "oltp_point_select 8 thr $ep, round $round"
      printf '[bench] round %d/%d oltp_point_select   8 thr  %-9s ' "$round" "$BENCH_TARGET_ROUNDS" "$ep" >&2
      measure oltp_point_select 8 "$ep" "$round"
    done
  done
fi
SG_ERRORS=$(grep -E 'ERROR|panick' "$TMP/shardgate.log" | sort | uniq -c | sort -rn | head -5)
while IFS= read -r f; do
  [[ -n $f ]] && FINDINGS+=("$f")
done < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["endpoint"] == "shardgate" and not r.get("ok"):
        print("run FAILED: sysbench %s %s threads through shardgate: %s" % (r["test"], r["threads"], r.get("error")))
' "$RECORDS")

# --------------------------------------------------- peak memory ----
MEM_LINES=()
if (( BENCH_MEM_ROWS > 0 )); then
  if (( BENCH_MEM_ROWS > BENCH_TABLE_SIZE )); then
    log "memory: topping sbtest1 up to $BENCH_MEM_ROWS rows (ids $((BENCH_TABLE_SIZE + 1))..$BENCH_MEM_ROWS straight into the physical tables, not binlogged)"
    t0=$(date +%s.%N)
    pids=()
    for n in $(seq 0 $((NODES - 1))); do
      stmts="SET SESSION sql_log_bin = 0;"
      for t in $(seq 0 $((TABLES_PER_NODE - 1))); do
        stmts+=" INSERT INTO sbtest1_$t (id, k, c, pad)
                 SELECT seq, 1 + seq % $BENCH_TABLE_SIZE,
                        LEFT(CONCAT_WS('-', MD5(seq), MD5(seq + 1), MD5(seq + 2), MD5(seq + 3)), 119),
                        LEFT(CONCAT_WS('-', MD5(seq + 4), MD5(seq + 5)), 59)
                 FROM seq_$((BENCH_TABLE_SIZE + 1))_to_$BENCH_MEM_ROWS
                 WHERE seq % 4 = $n AND (seq DIV 4) % 4 = $t;"
      done
      ds_sql "$n" "$stmts" >"$TMP/topup$n.log" 2>&1 &
      pids+=($!)
    done
    topup_ok=1
    for n in $(seq 0 $((NODES - 1))); do
      wait "${pids[$n]}" || { topup_ok=0; log "top-up on ${DS_DB[$n]} failed: $(head -c 300 "$TMP/topup$n.log")"; }
    done
    TOPUP_S=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
    (( topup_ok )) || die "topping up sbtest1 failed"
    log "memory: topped up in ${TOPUP_S}s"
  fi
  # A fresh proxy, so that its VmHWM is start-up + this query only.
  stop_pid "$SG_PID"; SG_PID=
  start_shardgate
  cnt=$(sg_sql "SELECT COUNT(*) FROM sbtest1" 2>&1)
  [[ $cnt == "$BENCH_MEM_ROWS" ]] || FINDINGS+=("WRONG: SELECT COUNT(*) FROM sbtest1 through shardgate gave '$cnt', want $BENCH_MEM_ROWS")
  q="SELECT * FROM sbtest1 ORDER BY id LIMIT $((BENCH_MEM_ROWS - 10)), 10"
  read -r rss0 hwm0 < <(awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} END {print r, h}' "/proc/$SG_PID/status")
  python3 "$BENCH_DIR/sbtool.py" memwatch --pid "$SG_PID" --out "$TMP/mem.json" &
  MW_PID=$!
  sleep 0.2
  t0=$(date +%s.%N)
  res=$(sg_sql "$q" 2>&1); qrc=$?
  q_s=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$(date +%s.%N)")
  load_mem=$(cut -d' ' -f1 /proc/loadavg)
  sleep 0.1
  kill "$MW_PID" 2>/dev/null; wait "$MW_PID" 2>/dev/null; MW_PID=
  read -r rss1 hwm1 < <(awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} END {print r, h}' "/proc/$SG_PID/status" 2>/dev/null)
  max_rss=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_rss_kib"])' "$TMP/mem.json" 2>/dev/null || echo "?")
  want_ids=$(seq $((BENCH_MEM_ROWS - 9)) "$BENCH_MEM_ROWS" | paste -sd' ' -)
  got_ids=$(cut -f1 <<<"$res" | paste -sd' ' -)
  MEM_LINES+=("query:      $q  (through shardgate, text protocol; $BENCH_MEM_ROWS rows in sbtest1 over 16 physical tables)")
  if (( qrc != 0 )); then
    MEM_LINES+=("result:     FAILED after ${q_s}s: $(head -c 300 <<<"$res")")
    FINDINGS+=("memory query failed: $q -> $(head -c 300 <<<"$res")")
  else
    if [[ $got_ids == "$want_ids" ]]; then
      MEM_LINES+=("result:     the 10 right rows (ids $((BENCH_MEM_ROWS - 9))..$BENCH_MEM_ROWS) in ${q_s}s, load avg $load_mem")
    else
      MEM_LINES+=("result:     WRONG ids [$got_ids], want [$want_ids] (${q_s}s)")
      FINDINGS+=("WRONG: $q returned ids [$got_ids], want [$want_ids]")
    fi
  fi
  if [[ -n ${hwm1:-} ]]; then
    MEM_LINES+=("memory:     VmHWM before $((hwm0 / 1024)) MiB (fresh proxy, after SELECT COUNT(*)), after $((hwm1 / 1024)) MiB (+$(( (hwm1 - hwm0) / 1024 )) MiB); sampled max VmRSS $(( ${max_rss:-0} / 1024 )) MiB; VmRSS now $((rss1 / 1024)) MiB")
    MEM_LINES+=("data:       ~$(( BENCH_MEM_ROWS * 200 / 1048576 )) MiB of rows (~200 bytes each on the wire) streamed through the merge")
    verdict=MISS; (( hwm1 < MEM_TARGET_MIB * 1024 )) && verdict=PASS
    MEM_LINES+=("target:     proxy peak memory (VmHWM) < $MEM_TARGET_MIB MiB: $((hwm1 / 1024)) MiB  $verdict")
  else
    MEM_LINES+=("memory:     shardgate (pid $SG_PID) is gone")
    FINDINGS+=("shardgate died during: $q (log: $(tail -n 3 "$TMP/shardgate.log" | tr '\n' ' '))")
  fi
  if [[ $BENCH_KEEP_TABLES == 1 && $BENCH_MEM_ROWS -gt $BENCH_TABLE_SIZE ]]; then
    for n in $(seq 0 $((NODES - 1))); do
      for t in $(seq 0 $((TABLES_PER_NODE - 1))); do
        ds_sql "$n" "SET SESSION sql_log_bin = 0; DELETE FROM sbtest1_$t WHERE id > $BENCH_TABLE_SIZE" >/dev/null 2>&1
      done
    done
  fi
fi

# ------------------------------------------------------------ report ----
{
  echo "ShardGate sharded benchmark -- $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo "commit:    $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)$( [[ -n $(git -C "$REPO" status --porcelain 2>/dev/null | head -1) ]] && echo ' (dirty tree)')"
  echo "machine:   $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load avg $(cut -d' ' -f1-3 /proc/loadavg) at end"
  echo "tools:     $(sysbench --version), $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3), MariaDB $DB_VERSION"
  echo "settings:  ${BENCH_SECONDS}s per run after ${BENCH_WARMUP}s warm-up, --db-ps-mode=$BENCH_PS_MODE, $BENCH_TABLES tables x $BENCH_TABLE_SIZE rows"
  echo "sharding:  sbtestN -> ds\${0..3}.sbtestN_\${0..3}, ds = id % 4, table = (id / 4) % 4;"
  echo "           prepared through shardgate with --auto_inc=off in ${PREP_S}s; placement: $PLACEMENT"
  echo "direct:    mariadbd pid ${DB_PID0:-?} at $DS_HOST:${DS_PORT[0]} db $DIRECT_DB (plain copy of the same rows)"
  want haproxy && echo "haproxy:   127.0.0.1:$HAPROXY_PORT, mode tcp, nbthread $HAPROXY_NBTHREAD -> $DS_HOST:${DS_PORT[0]} db $DIRECT_DB"
  echo "shardgate: 127.0.0.1:$SHARDGATE_PORT db $SG_DB, $SHARDGATE_BIN, RUST_LOG=$RUST_LOG; mariadbd pids ${DB_PIDS[*]:-?}"
  echo "           pool max_size per data source: ${SHARDGATE_POOL_MAX_SIZE:-config default (20)}"
  echo "columns:   QPS = sysbench queries/s (read_only counts BEGIN/COMMIT too); p95 = per sysbench event"
  echo "           (one query for point_select, one 16-query transaction for read_only); µs/q = CPU"
  echo "           (utime+stime) of the process during the run / queries; client = sysbench itself."
  echo "           ShardGate's read_only ranges (id BETWEEN, a range over a mod key) go to all 16 tables."
  echo
  python3 "$BENCH_DIR/sbtool.py" report --records "$RECORDS" \
    --target-name "issue 3 Proof, sharded" --target-ratio 0.80 --target-us 30
  for note in "${NOTES[@]}"; do echo "  note: $note"; done
  echo
  echo "Differential check of oltp_read_only's statements (shardgate vs the plain copy, text protocol):"
  for l in "${CHECK_SUMMARY[@]}"; do echo "  $l"; done
  if (( BENCH_MEM_ROWS > 0 )); then
    echo
    echo "Peak memory of a deep scatter page${TOPUP_S:+ (sbtest1 topped up in ${TOPUP_S}s)}:"
    for l in "${MEM_LINES[@]}"; do echo "  $l"; done
  fi
  echo
  if (( ${#FINDINGS[@]} )); then
    echo "Findings (refused / wrong / errors):"
    for f in "${FINDINGS[@]}"; do echo "  - $f"; done
  else
    echo "Findings: none (no statement refused, no wrong answer)"
  fi
  if [[ -n $SG_ERRORS ]]; then
    echo "shardgate log, most frequent ERROR lines during the runs:"
    sed 's/^/  /' <<<"$SG_ERRORS" | cut -c1-300
  fi
  echo
  echo "raw sysbench output: $RAW"
} | tee "$OUT"
echo "results written to $OUT"
exit 0
