#!/usr/bin/env bash
# ShardGate soak benchmark (issue 15): the release proxy on the seed's
# config (replicas on) under a long mixed load, to show that it holds
# steady: its resident memory and open file descriptors stay flat, and no
# statement fails.
#
# For SOAK_MINUTES (default 30) two sysbench clients run through ShardGate
# at once:
#   mixed     oltp_read_write, SOAK_THREADS threads, on sysbench's tables
#             (unsharded, on ds0), every transaction a mix of reads and writes
#   connects  SOAK_CONNECT_WORKERS Python processes (mysqlclient, the C
#             driver) opening together
#             SOAK_CONNECT_RATE new connections a second (login, a point
#             select, quit): 60/s would be 108,000 in 30 minutes; each
#             worker goes as fast as it can when it falls behind
# and the proxy's VmRSS and fd count are read every SOAK_SAMPLE seconds.
# The verdict compares the last fifth of the samples with the fifth after
# warm-up (the first two minutes are the pools and caches filling): each
# within SOAK_TOLERANCE percent (default 10), no failed connect, and
# sysbench ending well (the deadlocks it retries, as it does against one
# server, are counted, not failures).
#
# Exit status: 0 when the soak held, 1 when it did not or could not run,
# 2 on a usage error. Needs: the sandbox up, sysbench, the mariadb client,
# mysqlclient in the repository's .venv (scripts/install-deps.sh installs
# them). Not PyMySQL: its connect takes some 30 ms of its own, so that a
# few processes could not keep 60/s.

set -uo pipefail

usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
  cat <<'EOF'
Environment (defaults in brackets):
  SOAK_MINUTES       how long the load runs                       [30]
  SOAK_THREADS       oltp_read_write threads                      [2]
  SOAK_CONNECT_RATE  new connections a second, all workers       [60]
  SOAK_CONNECT_WORKERS  processes opening them                  [6]
  SOAK_SAMPLE        seconds between samples                      [10]
  SOAK_TOLERANCE     allowed growth of RSS and fds, percent       [10]
  SHARDGATE_BUILD    1 = cargo build --release -p shardgate-proxy  [1]
  SANDBOX_DIR        the sandbox folder                  [<repo>/.sandbox]
  BENCH_RESULTS_DIR  where the samples and the verdict go [bench/results]
EOF
}
[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
(($# == 0)) || { usage >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SOAK_MINUTES=${SOAK_MINUTES:-30}
SOAK_THREADS=${SOAK_THREADS:-2}
SOAK_CONNECT_RATE=${SOAK_CONNECT_RATE:-60}
SOAK_CONNECT_WORKERS=${SOAK_CONNECT_WORKERS:-6}
SOAK_SAMPLE=${SOAK_SAMPLE:-10}
SOAK_TOLERANCE=${SOAK_TOLERANCE:-10}
SHARDGATE_BUILD=${SHARDGATE_BUILD:-1}
RESULTS=${BENCH_RESULTS_DIR:-$REPO/bench/results}
BIN=$REPO/target/release/shardgate

log() { echo "soak: $*" >&2; }
die() {
  log "$*"
  exit 1
}

command -v sysbench >/dev/null || die "sysbench not found (scripts/install-deps.sh installs it)"
PYTHON=$REPO/.venv/bin/python
"$PYTHON" -c 'import MySQLdb' 2>/dev/null ||
  die "mysqlclient not found in $REPO/.venv (scripts/install-deps.sh installs it)"
mariadb --no-defaults -h127.0.0.1 -P13306 -uroot -e 'SELECT 1' ds0 >/dev/null 2>&1 ||
  die "ds0's primary (127.0.0.1:13306) does not answer: docker/sandbox.sh up"

if ((SHARDGATE_BUILD)); then
  log "cargo build --release -p shardgate-proxy"
  (cd "$REPO" && cargo build --release -q -p shardgate-proxy) || die "the build failed"
fi
[[ -x $BIN ]] || die "$BIN is missing (SHARDGATE_BUILD=1 builds it)"

TMP=$(mktemp -d)
SG_PID=
cleanup() {
  [[ -n $SG_PID ]] && kill "$SG_PID" 2>/dev/null && wait "$SG_PID" 2>/dev/null
  jobs -p | xargs -r kill 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
ADMIN=$(free_port)
sed -e "s/127.0.0.1:3307/127.0.0.1:$PORT/" -e "s/127.0.0.1:9797/127.0.0.1:$ADMIN/" \
  "$REPO/examples/wework.toml" >"$TMP/shardgate.toml"
RUST_LOG=${RUST_LOG:-warn} "$BIN" --config "$TMP/shardgate.toml" >"$TMP/shardgate.log" 2>&1 &
SG_PID=$!
for _ in $(seq 100); do
  mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -e 'SELECT 1' wework >/dev/null 2>&1 && break
  sleep 0.1
done
kill -0 "$SG_PID" 2>/dev/null || die "shardgate did not start: $(tail -5 "$TMP/shardgate.log")"

SB=(--mysql-host=127.0.0.1 --mysql-port="$PORT" --mysql-user=root --mysql-db=wework
  --mysql-ssl=off --tables=4 --report-interval=0 --db-ps-mode=auto)
log "preparing sysbench's 4 tables of 10,000 rows through ShardGate"
sysbench oltp_read_write "${SB[@]}" cleanup >"$TMP/prepare.log" 2>&1
sysbench oltp_read_write "${SB[@]}" --table-size=10000 --threads=4 prepare >>"$TMP/prepare.log" 2>&1 ||
  die "sysbench prepare failed: $(tail -5 "$TMP/prepare.log")"

SECONDS_TOTAL=$((SOAK_MINUTES * 60))
log "load for $SOAK_MINUTES min: oltp_read_write x$SOAK_THREADS and $SOAK_CONNECT_RATE connects/s"
sysbench oltp_read_write "${SB[@]}" --threads="$SOAK_THREADS" --time="$SECONDS_TOTAL" run \
  >"$TMP/mixed.out" 2>&1 &
MIXED=$!
cat >"$TMP/connects.py" <<'PY'
import sys, time, MySQLdb
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
connects = errors = 0
start = time.monotonic()
while time.monotonic() - start < seconds:
    due = start + connects / rate
    if due > time.monotonic():
        time.sleep(due - time.monotonic())
    connects += 1
    try:
        c = MySQLdb.connect(host="127.0.0.1", port=port, user="root", database="wework")
        with c.cursor() as cur:
            cur.execute("SELECT c FROM sbtest1 WHERE id = %s", (connects % 10000 + 1,))
            cur.fetchall()
        c.close()
    except Exception as e:
        errors += 1
        if errors <= 5:
            print("error:", e)
print(f"connects: {connects}\nerrors: {errors}")
PY
worker_rate=$(python3 -c "print($SOAK_CONNECT_RATE / $SOAK_CONNECT_WORKERS)")
WORKERS=()
for i in $(seq "$SOAK_CONNECT_WORKERS"); do
  "$PYTHON" "$TMP/connects.py" "$PORT" "$worker_rate" "$SECONDS_TOTAL" >"$TMP/connects.$i.out" 2>&1 &
  WORKERS+=($!)
done

SAMPLES=$TMP/samples.csv
echo "seconds,rss_kib,fds" >"$SAMPLES"
start=$(date +%s)
while kill -0 "$MIXED" "${WORKERS[@]}" 2>/dev/null; do
  kill -0 "$SG_PID" 2>/dev/null || die "shardgate exited during the soak: $(tail -5 "$TMP/shardgate.log")"
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SG_PID/status")
  fds=$(find "/proc/$SG_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
  echo "$(($(date +%s) - start)),$rss,$fds" >>"$SAMPLES"
  sleep "$SOAK_SAMPLE"
done
wait "$MIXED"
mixed_rc=$?
for pid in "${WORKERS[@]}"; do wait "$pid"; done
cat "$TMP"/connects.*.out >"$TMP/connects.out"
sysbench oltp_read_write "${SB[@]}" cleanup >>"$TMP/prepare.log" 2>&1

mkdir -p "$RESULTS"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
cp "$SAMPLES" "$RESULTS/soak-$stamp.csv"
REPORT=$RESULTS/soak-$stamp.txt
python3 - "$SAMPLES" "$TMP/mixed.out" "$TMP/connects.out" "$SOAK_TOLERANCE" \
  "$mixed_rc" "$SOAK_MINUTES" >"$REPORT" <<'PY'
import csv, re, sys
samples, mixed, connects, tolerance, mixed_rc, minutes = sys.argv[1:]
rows = [r for r in csv.DictReader(open(samples)) if int(r["seconds"]) >= 120]
if len(rows) < 10:
    print("verdict: FAILED (too few samples after the 2-minute warm-up)")
    sys.exit(0)
fifth = max(1, len(rows) // 5)
early, late = rows[:fifth], rows[-fifth:]
def mean(rows, key):
    return sum(int(r[key]) for r in rows) / len(rows)
def stat(path, name):
    m = re.search(name + r":\s+(\d+)", open(path).read())
    return int(m.group(1)) if m else None
ok = mixed_rc == "0"
print(f"soak: {minutes} min through ShardGate (release, examples/wework.toml, replicas on)")
for key, what in (("rss_kib", "VmRSS KiB"), ("fds", "open fds")):
    a, b = mean(early, key), mean(late, key)
    growth = (b - a) / a * 100 if a else 0.0
    peak = max(int(r[key]) for r in rows)
    held = growth <= float(tolerance)
    ok &= held
    print(f"{what:10} after warm-up {a:10.0f}, at the end {b:10.0f}: {growth:+.1f}% "
          f"(peak {peak}; bound +{tolerance}%) {'ok' if held else 'GREW'}")
events = stat(mixed, "total number of events")
retried = stat(mixed, "ignored errors")
print(f"oltp_read_write: {events} transactions, ended {'well' if mixed_rc == '0' else 'with an error'}"
      f" ({retried} deadlocks retried by sysbench)")
text = open(connects).read()
connected = sum(int(n) for n in re.findall(r"connects: (\d+)", text))
failed = sum(int(n) for n in re.findall(r"errors: (\d+)", text))
ok &= failed == 0
print(f"connects (login, a point select, quit): {connected}, {failed} failed")
print("verdict:", "held" if ok else "FAILED")
PY
cat "$REPORT"
grep -q "^verdict: held" "$REPORT"
