#!/usr/bin/env bash
# Migrator benchmark (issue 6): copy rate and verify rate of
# shardgate-migrator on BENCH_ROWS `users` rows, expanded from
# ds${0..3}.users_${0..15} to ds${0..3}.users_${0..31} (a rebuild: every row is
# copied into the new layout, half of them into tables that did not exist).
#
# The rows are written straight into the physical tables of databases
# mgbench_ds0..3 on the sandbox's primaries (INSERT ... SELECT from MariaDB's
# sequence engine, each row in the table the old rules name), then:
#   copy    `shardgate-migrator start`'s copy phase (lock-and-copy in batches,
#           with the binlog catch-up streaming beside it), timed from the
#           job's state file; start then catches up and verifies
#   verify  `shardgate-migrator verify` on its own: chunk checksums of old vs
#           new layout, plus the placement of every new row
# and prints rows/s for each. No ShardGate process is involved.
#
# Exit status: 0 when the benchmark ran and verify found no difference; 1 on a
# setup error or a failed step; 2 on a usage error.

set -uo pipefail

usage() {
  cat <<'EOF'
Usage: bench/migrate.sh [-h|--help]

Needs: the sandbox up (docker/sandbox.sh up), the mariadb client, cargo (or
MIGRATOR_BUILD=0 and a built MIGRATOR_BIN).

Environment (defaults in brackets):
  BENCH_ROWS         users rows                                  [1000000]
  BENCH_BATCH        --batch-size (both runs)                       [4000]
  BENCH_PARALLELISM  --parallelism (both runs)                         [4]
  BENCH_KEEP         1 = keep the mgbench_ds* databases at the end     [0]
  BENCH_RESULTS_DIR  where the report goes                  [bench/results]
  MIGRATOR_BUILD     1 = cargo build --release -p shardgate-migrator   [1]
  MIGRATOR_BIN       [${CARGO_TARGET_DIR:-target}/release/shardgate-migrator]
  DS_HOST / DS_PORTS primaries of ds0..ds3  [127.0.0.1 / 13306 13307 13308 13309]
  BENCH_LIVE_RATES   write rates (writes/s) of the live-load run      [600 2000]
                     ("" skips it): a whole job through an in-process
                     ShardGate under a load recording every write
                     (cargo bench -p shardgate-migrator --bench
                     cutover_under_load), printing write rates, copy and
                     verification rates, the cutover's write pause and
                     every failed, lost or misplaced write
  BENCH_LIVE_ROWS    seeded rows of the live-load run          [BENCH_ROWS]
EOF
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_ROWS=${BENCH_ROWS:-1000000}
BENCH_BATCH=${BENCH_BATCH:-4000}
BENCH_PARALLELISM=${BENCH_PARALLELISM:-4}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_LIVE_ROWS=${BENCH_LIVE_ROWS:-$BENCH_ROWS}
BENCH_RESULTS_DIR=${BENCH_RESULTS_DIR:-$REPO/bench/results}
MIGRATOR_BUILD=${MIGRATOR_BUILD:-1}
MIGRATOR_BIN=${MIGRATOR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/shardgate-migrator}
DS_HOST=${DS_HOST:-127.0.0.1}
read -r -a DS_PORT <<<"${DS_PORTS:-13306 13307 13308 13309}"

for v in BENCH_ROWS BENCH_BATCH BENCH_PARALLELISM BENCH_LIVE_ROWS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer" >&2; exit 2; }
done
((BENCH_ROWS % 64 == 0)) || { echo "BENCH_ROWS must be a multiple of 64 (4 data sources x 16 tables)" >&2; exit 2; }

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
sql() { mariadb --no-defaults --protocol=TCP -h"$DS_HOST" -P"$1" -uroot -N -B -e "$2"; }
now() { date +%s.%N; }

command -v mariadb >/dev/null || die "the mariadb client is missing (scripts/install-deps.sh)"
for i in 0 1 2 3; do
  sql "${DS_PORT[$i]}" "SELECT 1" >/dev/null 2>&1 || die "ds$i's primary on $DS_HOST:${DS_PORT[$i]} does not answer (docker/sandbox.sh up)"
done
if [[ $MIGRATOR_BUILD == 1 ]]; then
  log "cargo build --release -p shardgate-migrator"
  (cd "$REPO" && cargo build --release -q -p shardgate-migrator) || die "build failed"
fi
[[ -x $MIGRATOR_BIN ]] || die "no migrator binary at $MIGRATOR_BIN"

TMP=$(mktemp -d)
drop_databases() {
  for i in 0 1 2 3; do sql "${DS_PORT[$i]}" "DROP DATABASE IF EXISTS mgbench_ds$i" || true; done
}
cleanup() {
  [[ $BENCH_KEEP == 1 ]] || drop_databases
  rm -rf "$TMP"
}
trap cleanup EXIT

config() { # config TABLES_PER_SOURCE
  printf '[server]\ndatabase = "wework"\n[[server.users]]\nname = "root"\n\n'
  for i in 0 1 2 3; do
    printf '[data_sources.ds%s]\nurl = "mysql://root@%s:%s/mgbench_ds%s"\n\n' "$i" "$DS_HOST" "${DS_PORT[$i]}" "$i"
  done
  cat <<EOF
[tables.users]
nodes = "ds\${0..3}.users_\${0..$(($1 - 1))}"
database = { column = "user_id", algorithm = "mod", count = 4 }
table = { column = "user_id", expression = "users_\${(user_id / 4) % $1}" }
key = { column = "user_id", generator = "snowflake" }
EOF
}
config 16 >"$TMP/from.toml"
config 32 >"$TMP/to.toml"

# ----------------------------------------------------------------- data ----
drop_databases
per_table=$((BENCH_ROWS / 64))
log "loading $BENCH_ROWS rows into ds\${0..3}.users_\${0..15} ($per_table per table)"
t0=$(now)
for i in 0 1 2 3; do
  (
    stmts="CREATE DATABASE mgbench_ds$i; USE mgbench_ds$i; SET SESSION sql_log_bin = 0;"
    for t in $(seq 0 15); do
      # user_id = (k * 16 + t) * 4 + i lands on ds i, table t under the old rules.
      stmts+="CREATE TABLE users_$t (user_id BIGINT PRIMARY KEY, tenant_id VARCHAR(64),
        name VARCHAR(100) CHARACTER SET utf8mb4, email VARCHAR(200) NULL,
        balance DECIMAL(20,4) NULL, created_at DATETIME NULL, status TINYINT) ENGINE=InnoDB;
        INSERT INTO users_$t SELECT (seq * 16 + $t) * 4 + $i, CONCAT('t', seq % 97),
          CONCAT('user ', seq, ' 名前'), IF(seq % 5 = 0, NULL, CONCAT('u', seq, '@example.com')),
          IF(seq % 3 = 0, NULL, (seq % 100000) / 7), '2024-01-31 23:59:59' + INTERVAL seq MINUTE, seq % 3
        FROM seq_0_to_$((per_table - 1));"
    done
    sql "${DS_PORT[$i]}" "$stmts"
  ) || die "loading ds$i failed" &
done
wait
t1=$(now)
loaded=0
for i in 0 1 2 3; do
  for t in $(seq 0 15); do
    n=$(sql "${DS_PORT[$i]}" "SELECT COUNT(*) FROM mgbench_ds$i.users_$t") || die "count failed"
    loaded=$((loaded + n))
  done
done
((loaded == BENCH_ROWS)) || die "loaded $loaded rows, want $BENCH_ROWS"
log "loaded in $(printf '%.1f' "$(echo "$t1 - $t0" | bc)") s"

# ----------------------------------------------------------------- copy ----
# `start` runs create -> copy (with catch-up beside it) -> catch-up ->
# verify -> ready; a watcher notes when the job's state file changes phase.
state="$TMP/state"
log "shardgate-migrator start, batch $BENCH_BATCH, parallelism $BENCH_PARALLELISM"
"$MIGRATOR_BIN" --state-dir "$state" start --from "$TMP/from.toml" --to "$TMP/to.toml" --table users \
  --batch-size "$BENCH_BATCH" --parallelism "$BENCH_PARALLELISM" >"$TMP/start.log" 2>&1 &
start_pid=$!
python3 - "$state" "$start_pid" >"$TMP/phases" <<'PY' &
import glob, json, os, sys, time
state_dir, pid = sys.argv[1], int(sys.argv[2])
seen = None
def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
while True:
    running = alive()
    for path in glob.glob(os.path.join(state_dir, "migration_users_*.json")):
        try:
            with open(path) as f:
                phase = json.load(f)["phase"]
        except (OSError, ValueError, KeyError):
            continue
        if phase != seen:
            print(f"{time.time():.3f} {phase}", flush=True)
            seen = phase
    if not running:
        break
    time.sleep(0.05)
PY
watch_pid=$!
t_start=$(now)
wait "$start_pid" || { tail -n 20 "$TMP/start.log" >&2; die "start failed"; }
t_end=$(now)
wait "$watch_pid"
job=$(ls "$state" | grep -E '^migration_users_[0-9]+\.json$' | head -1)
job=${job%.json}
[[ -n $job ]] || die "no job in $state"
phase_at() { awk -v p="$1" '$2 == p { print $1; exit }' "$TMP/phases"; }
copy_from=$(phase_at copying); copy_to=$(phase_at catching_up)
[[ -n $copy_to ]] || copy_to=$(phase_at verifying)
verify_from=$(phase_at verifying); verify_to=$(phase_at ready)
[[ -n $copy_from && -n $copy_to && -n $verify_from && -n $verify_to ]] \
  || { cat "$TMP/phases" >&2; die "did not see the job's phases (see above)"; }
copy_s=$(echo "$copy_to - $copy_from" | bc)
catchup_s=$(echo "$verify_from - $copy_to" | bc)
start_verify_s=$(echo "$verify_to - $verify_from" | bc)
start_s=$(echo "$t_end - $t_start" | bc)

# --------------------------------------------------------------- verify ----
log "shardgate-migrator verify $job (again, on its own)"
t0=$(now)
"$MIGRATOR_BIN" --state-dir "$state" verify "$job" >"$TMP/verify.log" 2>&1
verify_rc=$?
t1=$(now)
verify_s=$(echo "$t1 - $t0" | bc)

rate() { printf '%.0f' "$(echo "$BENCH_ROWS / $1" | bc -l)"; }
mkdir -p "$BENCH_RESULTS_DIR"
report="$BENCH_RESULTS_DIR/migrate-$(date +%Y%m%d-%H%M%S).txt"
{
  echo "shardgate-migrator: users ds\${0..3}.users_\${0..15} -> ds\${0..3}.users_\${0..31}, $BENCH_ROWS rows"
  echo "machine:  $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "settings: batch $BENCH_BATCH, parallelism $BENCH_PARALLELISM"
  echo
  printf '%-22s %10s %12s\n' phase seconds rows/s
  printf '%-22s %10.1f %12s\n' "copy" "$copy_s" "$(rate "$copy_s")"
  printf '%-22s %10.1f %12s\n' "verify (in start)" "$start_verify_s" "$(rate "$start_verify_s")"
  printf '%-22s %10.1f %12s\n' "verify (on its own)" "$verify_s" "$(rate "$verify_s")"
  printf '%-22s %10.1f\n' "catch-up after copy" "$catchup_s"
  printf '%-22s %10.1f\n' "start, in all" "$start_s"
  echo
  echo "copy = the job's 'copying' phase (lock-and-copy batches, catch-up streaming beside it);"
  echo "verify = chunk checksums of both layouts, row comparison of mismatching chunks and the"
  echo "placement of every new row; 'start, in all' adds creating the 128 tables, the catch-up"
  echo "and the process start. Phases seen in the job's state file every 50 ms."
  echo
  echo "verify output (exit status $verify_rc):"
  tail -n 8 "$TMP/verify.log" | sed 's/^/  /'
} | tee "$report"
log "report written to $report"
((verify_rc == 0)) || exit 1

# ----------------------------------------------------------- live load ----
BENCH_LIVE_RATES=${BENCH_LIVE_RATES-600 2000}
if [[ -n $BENCH_LIVE_RATES ]]; then
  log "cutover under a live load at $BENCH_LIVE_RATES writes/s ($BENCH_LIVE_ROWS rows)"
  read -r -a rates <<<"$BENCH_LIVE_RATES"
  live="$BENCH_RESULTS_DIR/migrate-live-$(date +%Y%m%d-%H%M%S).txt"
  (cd "$REPO" && SHARDGATE_SANDBOX=1 BENCH_ROWS=$BENCH_LIVE_ROWS BENCH_BATCH=$BENCH_BATCH \
    BENCH_PARALLELISM=$BENCH_PARALLELISM \
    cargo bench -q -p shardgate-migrator --bench cutover_under_load -- "${rates[@]}") \
    | grep -E '^(==|   )' | tee "$live"
  ((PIPESTATUS[0] == 0)) || die "the live-load run failed"
  grep -q 'job FAILED\|   ! ' "$live" && die "a job failed or a write was lost or misplaced (see $live)"
  log "report written to $live"
fi
