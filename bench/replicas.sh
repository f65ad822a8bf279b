#!/usr/bin/env bash
# ShardGate read/write splitting benchmark (issue 4, "Proof": the benchmark
# bullet).
#
# sysbench's tables sbtest1..N are sharded by `id` over ds0..ds3, as in
# bench/sharded.sh (4 physical tables per data source), but under physical
# names of their own (rwbenchN_0..3) so that a concurrent sharded.sh is not
# disturbed. The data is prepared THROUGH ShardGate (sysbench --auto_inc=off
# prepare) and the script waits until every replica has applied it. Then, in
# one run, sysbench oltp_read_only drives two ShardGate processes that differ
# in one setting only:
#   replicas   [server] read_write_splitting = true   (reads on ds*'s replicas)
#   primaries  [server] read_write_splitting = false  (everything on ds0..ds3)
# and the script prints QPS, p95, the CPU per query of the proxy and of all
# twelve mariadbd together, where the SELECTs ran (Com_select deltas of the
# primaries and of the replicas), and the ratio replicas / primaries.
#
# sysbench runs with --skip_trx=on by default: oltp_read_only otherwise wraps
# its reads in BEGIN/COMMIT, and reads in a (read-write) transaction go to the
# primary (transaction_reads = "primary"), so both runs would be the same.
#
# All servers and the proxy share this machine's CPUs: replicas add servers
# to read from, not cores to run them on. Read the ratio with that in mind.
#
# Exit status: 0 when the benchmark ran (a slower replica run is reported, not
# a failure); 1 on a setup error; 2 on a usage error.

set -uo pipefail

usage() {
  cat <<'EOF'
Usage: bench/replicas.sh [-h|--help]

Needs: the sandbox up with its replicas (docker/sandbox.sh up), sysbench,
the mariadb client, python3 (3.11+, for tomllib), ss, cargo (or
SHARDGATE_BUILD=0 and a built SHARDGATE_BIN). Run from anywhere.

Environment (defaults in brackets):
  BENCH_SECONDS      measured seconds per run                         [15]
  BENCH_WARMUP       unmeasured warm-up seconds before each run       [2]
  BENCH_THREADS      sysbench threads                                 [8]
  BENCH_TABLES / BENCH_TABLE_SIZE   sysbench data set               [2 / 10000]
  BENCH_PS_MODE      sysbench --db-ps-mode: auto | disable            [auto]
  BENCH_SKIP_TRX     sysbench --skip_trx: on | off                    [on]
  BENCH_KEEP_TABLES  1 = leave the physical tables at the end         [0]
  BENCH_RESULTS_DIR  where the report goes                  [bench/results]
  SHARDGATE_BUILD    1 = cargo build --release -p shardgate-proxy first [1]
  SHARDGATE_BIN      [${CARGO_TARGET_DIR:-target}/release/shardgate]
  SHARDGATE_CONFIG   topology: data sources and replicas [examples/wework.toml]
  RUST_LOG           passed to shardgate                              [warn]

Defaults take about 1 minute (prepare, two runs of 2+15 s) plus the build.
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
BENCH_THREADS=${BENCH_THREADS:-8}
BENCH_TABLES=${BENCH_TABLES:-2}
BENCH_TABLE_SIZE=${BENCH_TABLE_SIZE:-10000}
BENCH_PS_MODE=${BENCH_PS_MODE:-auto}
BENCH_SKIP_TRX=${BENCH_SKIP_TRX:-on}
BENCH_KEEP_TABLES=${BENCH_KEEP_TABLES:-0}
BENCH_RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
SHARDGATE_BUILD=${SHARDGATE_BUILD:-1}
SHARDGATE_BIN=${SHARDGATE_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/shardgate}
SHARDGATE_CONFIG=${SHARDGATE_CONFIG:-$REPO/examples/wework.toml}
export RUST_LOG=${RUST_LOG:-warn}
PHYSICAL=rwbench TABLES_PER_NODE=4 SG_DB=wework

die() { echo "replicas.sh: setup error: $*" >&2; exit 1; }
log() { echo "[bench] $*" >&2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for v in BENCH_SECONDS BENCH_THREADS BENCH_TABLES; do
  is_uint "${!v}" && (( ${!v} > 0 )) || { echo "$v must be a positive integer" >&2; exit 2; }
done
is_uint "$BENCH_WARMUP" || { echo "BENCH_WARMUP must be an integer" >&2; exit 2; }
is_uint "$BENCH_TABLE_SIZE" && (( BENCH_TABLE_SIZE >= 200 )) || { echo "BENCH_TABLE_SIZE must be an integer >= 200" >&2; exit 2; }
case "$BENCH_PS_MODE" in auto|disable) ;; *) echo "BENCH_PS_MODE must be auto or disable" >&2; exit 2 ;; esac
case "$BENCH_SKIP_TRX" in on|off) ;; *) echo "BENCH_SKIP_TRX must be on or off" >&2; exit 2 ;; esac

command -v sysbench >/dev/null || die "sysbench not found (apt-get install -y sysbench)"
command -v python3  >/dev/null || die "python3 not found"
command -v ss       >/dev/null || die "ss not found (apt-get install -y iproute2)"
MYSQL=$(command -v mariadb || command -v mysql) || die "mariadb client not found (apt-get install -y mariadb-client)"
CLK_TCK=$(getconf CLK_TCK)

# The topology: "ds host port user password db role" per server, primaries first.
TOPOLOGY=$(python3 - "$SHARDGATE_CONFIG" <<'EOF'
import sys, tomllib
from urllib.parse import urlparse
cfg = tomllib.load(open(sys.argv[1], "rb"))
for ds, src in sorted(cfg["data_sources"].items()):
    for role, url in [("primary", src["url"])] + [("replica", u) for u in src.get("replicas", [])]:
        u = urlparse(url)
        print(ds, u.hostname, u.port or 3306, u.username or "root", u.password or "-", u.path.lstrip("/"), role)
EOF
) || die "cannot read the data sources of $SHARDGATE_CONFIG"
mapfile -t SERVERS <<<"$TOPOLOGY"
DS_NAMES=$(awk '{print $1}' <<<"$TOPOLOGY" | sort -u | paste -sd' ')
[[ $DS_NAMES == "ds0 ds1 ds2 ds3" ]] || die "expected data sources ds0..ds3 in $SHARDGATE_CONFIG, found: $DS_NAMES"
(( $(grep -c ' replica$' <<<"$TOPOLOGY") > 0 )) || die "$SHARDGATE_CONFIG names no replica"

# srv_sql "LINE" STATEMENT...
srv_sql() {
  local ds host port user pw db role; read -r ds host port user pw db role <<<"$1"; shift
  [[ $pw == - ]] && pw=
  MYSQL_PWD=$pw "$MYSQL" --no-defaults --protocol=TCP -h"$host" -P"$port" -u"$user" --connect-timeout=5 -N -B "$db" -e "$*"
}
# slave_threads "LINE": "Yes Yes" when both replication threads run.
slave_threads() {
  local ds host port user pw db role; read -r ds host port user pw db role <<<"$1"
  [[ $pw == - ]] && pw=
  MYSQL_PWD=$pw "$MYSQL" --no-defaults --protocol=TCP -h"$host" -P"$port" -u"$user" --connect-timeout=5 -e 'SHOW SLAVE STATUS\G' 2>/dev/null \
    | awk '$1 == "Slave_IO_Running:" { io = $2 } $1 == "Slave_SQL_Running:" { sq = $2 } END { print io, sq }'
}
port_pids() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }
port_busy() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }
free_ports() { python3 -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))'; }

TMP=$(mktemp -d /tmp/shardgate-replicas.XXXXXX)
declare -A SG_PID=() SG_PORT=()
PREPARED=0 RUN_PID=
physical_tables() { local i t; for i in $(seq 1 "$BENCH_TABLES"); do for t in $(seq 0 $((TABLES_PER_NODE - 1))); do echo "${PHYSICAL}${i}_$t"; done; done; }
drop_physical() {
  local line list
  list=$(physical_tables | sed 's/^/`/; s/$/`/' | paste -sd, -)
  for line in "${SERVERS[@]}"; do
    [[ $line == *" primary" ]] || continue
    srv_sql "$line" "DROP TABLE IF EXISTS $list" >>"$TMP/prepare.log" 2>&1 \
      || log "warning: dropping the ${PHYSICAL}* tables on $(cut -d' ' -f1 <<<"$line") failed"
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
  local rc=$? pid
  trap - EXIT INT TERM
  stop_pid "$RUN_PID"
  for pid in "${SG_PID[@]}"; do stop_pid "$pid"; done
  if (( PREPARED )) && [[ $BENCH_KEEP_TABLES != 1 ]]; then
    log "dropping the ${PHYSICAL}* tables on the primaries (the drops replicate)"
    drop_physical
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
run_bg() { "$@" & RUN_PID=$!; wait "$RUN_PID"; local rc=$?; RUN_PID=; return "$rc"; }

# ------------------------------------------------------------ servers ----
DB_PIDS=() PRIMARY_LINES=() REPLICA_LINES=()
for line in "${SERVERS[@]}"; do
  read -r ds host port _ <<<"$line"
  srv_sql "$line" "SELECT 1" >/dev/null 2>"$TMP/err" \
    || die "cannot reach $ds ($host:$port): $(tr '\n' ' ' <"$TMP/err") (start the sandbox: docker/sandbox.sh up)"
  if [[ $line == *" primary" ]]; then PRIMARY_LINES+=("$line"); else
    REPLICA_LINES+=("$line")
    st=$(slave_threads "$line")
    [[ $st == "Yes Yes" ]] || die "the replica of $ds on port $port does not replicate (IO/SQL: $st)"
  fi
  pid=$(port_pids "$port" | head -1)
  [[ -n $pid ]] && DB_PIDS+=("$pid")
done
(( ${#DB_PIDS[@]} == ${#SERVERS[@]} )) || { log "warning: not every mariadbd pid found; the mariadbd CPU column stays empty"; DB_PIDS=(); }
DB_VERSION=$(srv_sql "${PRIMARY_LINES[0]}" "SELECT VERSION()")

# Com_select of every primary (and every replica), summed.
com_select() {
  local sum=0 line v
  for line in "$@"; do
    v=$(srv_sql "$line" "SHOW GLOBAL STATUS LIKE 'Com_select'" | cut -f2)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# ------------------------------------------------------- build + config ----
if [[ $SHARDGATE_BUILD == 1 ]]; then
  command -v cargo >/dev/null || die "cargo not found (or set SHARDGATE_BUILD=0 and SHARDGATE_BIN)"
  log "building shardgate (cargo build --release -p shardgate-proxy) ..."
  (cd "$REPO" && cargo build --release -p shardgate-proxy) >"$TMP/build.log" 2>&1 \
    || { tail -n 20 "$TMP/build.log" >&2; die "cargo build --release -p shardgate-proxy failed"; }
fi
[[ -x $SHARDGATE_BIN ]] || die "shardgate binary $SHARDGATE_BIN not found"

read -r p1 p2 p3 p4 < <(free_ports)
SG_PORT[replicas]=$p1 SG_PORT[primaries]=$p3
# write_config NAME SPLITTING MYSQL_PORT ADMIN_PORT
write_config() {
  {
    awk -v listen="127.0.0.1:$3" -v admin="127.0.0.1:$4" -v rws="$2" '
      /^[[:space:]]*\[/ { section = $0; gsub(/[[:space:]]/, "", section) }
      /^[[:space:]]*read_write_splitting[[:space:]]*=/ && section == "[server]" { next }
      /^[[:space:]]*mysql_listen[[:space:]]*=/ && section == "[server]" { print "mysql_listen = \"" listen "\""; print "read_write_splitting = " rws; next }
      /^[[:space:]]*admin_listen[[:space:]]*=/ && section == "[server]" { print "admin_listen = \"" admin "\""; next }
      { print }' "$SHARDGATE_CONFIG" || exit 1
    for i in $(seq 1 "$BENCH_TABLES"); do
      cat <<EOF

[tables.sbtest$i]
nodes = "ds\${0..3}.${PHYSICAL}${i}_\${0..3}"
database = { column = "id", algorithm = "mod", count = 4 }
table = { column = "id", expression = "${PHYSICAL}${i}_\${(id / 4) % 4}" }
EOF
    done
  } >"$TMP/$1.toml"
  grep -q "read_write_splitting = $2" "$TMP/$1.toml" || die "cannot write read_write_splitting into $TMP/$1.toml (no mysql_listen in [server]?)"
}
write_config replicas true "$p1" "$p2"
write_config primaries false "$p3" "$p4"

sg_sql() { "$MYSQL" --no-defaults --protocol=TCP -h127.0.0.1 -P"${SG_PORT[$1]}" -uroot --connect-timeout=5 -N -B "$SG_DB" -e "$2"; }
start_shardgate() {
  local name=$1 port=${SG_PORT[$1]}
  port_busy "$port" && die "port $port is in use"
  "$SHARDGATE_BIN" --config "$TMP/$name.toml" >>"$TMP/shardgate-$name.log" 2>&1 &
  SG_PID[$name]=$!
  for _ in $(seq 75); do
    sg_sql "$name" "SELECT 1" >/dev/null 2>&1 && return 0
    kill -0 "${SG_PID[$name]}" 2>/dev/null || break
    sleep 0.2
  done
  tail -n 15 "$TMP/shardgate-$name.log" >&2
  die "shardgate ($name) did not answer on 127.0.0.1:$port"
}
start_shardgate replicas
start_shardgate primaries
log "shardgate pids: replicas ${SG_PID[replicas]} on ${SG_PORT[replicas]}, primaries ${SG_PID[primaries]} on ${SG_PORT[primaries]}"

SB_COMMON=(--db-driver=mysql --tables="$BENCH_TABLES" --table-size="$BENCH_TABLE_SIZE"
           --mysql-ssl=off --report-interval=0 --mysql-user=root --mysql-password= --mysql-db="$SG_DB")
sb_at() { echo --mysql-host=127.0.0.1 --mysql-port="${SG_PORT[$1]}"; }

# --------------------------------------------------------------- prepare ----
log "preparing $BENCH_TABLES tables x $BENCH_TABLE_SIZE rows through shardgate (physical ${PHYSICAL}N_0..3 on ds0..ds3)"
PREPARED=1
drop_physical
# shellcheck disable=SC2046
sysbench oltp_read_only "${SB_COMMON[@]}" $(sb_at primaries) cleanup >>"$TMP/prepare.log" 2>&1 \
  || { tail -n 20 "$TMP/prepare.log" >&2; die "sysbench cleanup through shardgate failed"; }
# shellcheck disable=SC2046
sysbench oltp_read_only "${SB_COMMON[@]}" $(sb_at primaries) --auto_inc=off --threads="$BENCH_TABLES" prepare >>"$TMP/prepare.log" 2>&1 \
  || { tail -n 20 "$TMP/prepare.log" >&2; die "sysbench prepare through shardgate failed"; }
log "waiting until every replica has applied the data"
for line in "${PRIMARY_LINES[@]}"; do
  ds=${line%% *}
  pos=$(srv_sql "$line" "SELECT @@gtid_binlog_pos")
  for r in "${REPLICA_LINES[@]}"; do
    [[ ${r%% *} == "$ds" ]] || continue
    [[ $(srv_sql "$r" "SELECT MASTER_GTID_WAIT('$pos', 120)") == 0 ]] || die "a replica of $ds did not reach $pos"
  done
done
q="SELECT COUNT(*), SUM(k), SUM(CRC32(c)) FROM sbtest1"
a=$(sg_sql replicas "$q" 2>&1) b=$(sg_sql primaries "$q" 2>&1)
[[ $a == "$b" ]] || die "the replicas answer [$a], the primaries [$b] to: $q"
log "both proxies answer [$a] to: $q"

# ------------------------------------------------------------------ runs ----
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$BENCH_RESULTS_DIR" || die "cannot create $BENCH_RESULTS_DIR"
OUT="$BENCH_RESULTS_DIR/replicas-$STAMP.txt"
RAW="$BENCH_RESULTS_DIR/replicas-$STAMP.log"
RECORDS="$TMP/records.jsonl"
: >"$RAW"
for ep in replicas primaries; do
  kill -0 "${SG_PID[$ep]}" 2>/dev/null || die "shardgate ($ep) is no longer running"
  printf '[bench] oltp_read_only %s thr  %-9s ' "$BENCH_THREADS" "$ep" >&2
  # shellcheck disable=SC2046
  if (( BENCH_WARMUP > 0 )); then
    run_bg sysbench oltp_read_only "${SB_COMMON[@]}" $(sb_at "$ep") --db-ps-mode="$BENCH_PS_MODE" \
      --skip_trx="$BENCH_SKIP_TRX" --threads="$BENCH_THREADS" --time="$BENCH_WARMUP" run >>"$TMP/warmup.log" 2>&1
  fi
  sel_p0=$(com_select "${PRIMARY_LINES[@]}") sel_r0=$(com_select "${REPLICA_LINES[@]}")
  db_args=()
  for p in "${DB_PIDS[@]}"; do db_args+=(--db-pid "$p"); done
  # shellcheck disable=SC2046
  run_bg python3 "$BENCH_DIR/sbtool.py" run --records "$RECORDS" --raw "$RAW" --clk-tck "$CLK_TCK" \
    --test oltp_read_only --threads "$BENCH_THREADS" --endpoint "$ep" --proxy-pid "${SG_PID[$ep]}" "${db_args[@]}" -- \
    sysbench oltp_read_only "${SB_COMMON[@]}" $(sb_at "$ep") --db-ps-mode="$BENCH_PS_MODE" \
    --skip_trx="$BENCH_SKIP_TRX" --threads="$BENCH_THREADS" --time="$BENCH_SECONDS" run >&2 \
    || die "sbtool.py failed"
  sel_p1=$(com_select "${PRIMARY_LINES[@]}") sel_r1=$(com_select "${REPLICA_LINES[@]}")
  echo "{\"endpoint\": \"$ep\", \"primary_selects\": $((sel_p1 - sel_p0)), \"replica_selects\": $((sel_r1 - sel_r0))}" >>"$TMP/selects.jsonl"
done
SG_ERRORS=$(cat "$TMP"/shardgate-*.log | grep -E 'ERROR|panick' | sort | uniq -c | sort -rn | head -5)

# ---------------------------------------------------------------- report ----
{
  echo "ShardGate read/write splitting benchmark -- $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo "commit:    $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)$( [[ -n $(git -C "$REPO" status --porcelain 2>/dev/null | head -1) ]] && echo ' (dirty tree)')"
  echo "machine:   $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load avg $(cut -d' ' -f1-3 /proc/loadavg) at end"
  echo "tools:     $(sysbench --version), MariaDB $DB_VERSION; ${#PRIMARY_LINES[@]} primaries, ${#REPLICA_LINES[@]} replicas (GTID replication)"
  echo "settings:  oltp_read_only, $BENCH_THREADS threads, ${BENCH_SECONDS}s per run after ${BENCH_WARMUP}s warm-up, --db-ps-mode=$BENCH_PS_MODE,"
  echo "           --skip_trx=$BENCH_SKIP_TRX, $BENCH_TABLES tables x $BENCH_TABLE_SIZE rows sharded 4 x 4 over ds0..ds3 (prepared through shardgate)"
  echo "endpoints: replicas  = shardgate with read_write_splitting = true  (reads: the replicas' default adaptive balancer)"
  echo "           primaries = shardgate with read_write_splitting = false (every statement on ds0..ds3's primaries)"
  echo "columns:   QPS and p95 (per sysbench event: 14 queries, 16 with BEGIN/COMMIT) from sysbench; µs/q = CPU (utime+stime) per query of the proxy and of"
  echo "           all ${#SERVERS[@]} mariadbd together; SELECTs = Com_select deltas of the primaries / of the replicas"
  echo
  python3 - "$RECORDS" "$TMP/selects.jsonl" <<'EOF'
import json, sys
recs = {r["endpoint"]: r for r in map(json.loads, open(sys.argv[1]))}
sels = {s["endpoint"]: s for s in map(json.loads, open(sys.argv[2]))}
fmt = lambda v, f="{:.1f}": "-" if v is None else f.format(v)
print(f"  {'endpoint':<10} {'QPS':>9} {'p95 ms':>8} {'proxy µs/q':>11} {'mariadbd µs/q':>14} {'SELECTs primaries':>18} {'SELECTs replicas':>17}")
for ep in ("replicas", "primaries"):
    r, s = recs.get(ep, {}), sels.get(ep, {})
    if not r.get("ok"):
        print(f"  {ep:<10} FAILED: {r.get('error', 'no record')}")
        continue
    print(f"  {ep:<10} {r['qps']:>9.0f} {fmt(r.get('p95_ms'), '{:.2f}'):>8} {fmt(r.get('proxy_us_q')):>11} "
          f"{fmt(r.get('db_us_q')):>14} {s.get('primary_selects', 0):>18} {s.get('replica_selects', 0):>17}")
a, b = recs.get("replicas", {}), recs.get("primaries", {})
if a.get("ok") and b.get("ok"):
    print()
    print(f"  ratio replicas / primaries: QPS {a['qps'] / b['qps']:.2f}x, p95 {a['p95_ms'] / b['p95_ms']:.2f}x"
          f" (load avg at the end of the runs: {a.get('load1')} / {b.get('load1')})")
EOF
  if [[ -n $SG_ERRORS ]]; then
    echo
    echo "shardgate logs, most frequent ERROR lines:"
    sed 's/^/  /' <<<"$SG_ERRORS" | cut -c1-300
  fi
  echo
  echo "raw sysbench output: $RAW"
} | tee "$OUT"
echo "results written to $OUT"
exit 0
