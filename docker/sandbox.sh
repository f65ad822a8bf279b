#!/usr/bin/env bash
# ShardGate's local database sandbox: real MariaDB servers with real GTID
# replication, started from Debian's binaries (no Docker).
#
#   docker/sandbox.sh up [--primaries N] [--replicas N] [--from-primary K] [--dir DIR]
#   docker/sandbox.sh status [--dir DIR]
#   docker/sandbox.sh down [--purge] [--dir DIR]
#
# Layout (defaults: 4 primaries, 2 replicas each = 12 servers):
#   ds<i>              primary,  port 13306+i,         database `ds<i>`
#   ds<i>-replica<r>   replica,  port 13316+10*r+i,    replicates ds<i>
# (so ds0's replicas are on 13316 and 13326, ds3's on 13319 and 13329).
# Every server listens on 127.0.0.1 only and keeps everything (my.cnf, data/,
# pid file, socket, error.log) in $SANDBOX_DIR/<name>/ (default: $REPO/.sandbox).
# User root, empty password, over TCP from 127.0.0.1; replication user repl/repl.
# On replicas root@127.0.0.1 lacks READ_ONLY ADMIN, so read_only=ON refuses its
# writes (error 1290); root@localhost over the socket can still write.
# TLS: every server offers it (not required) with one certificate for
# 127.0.0.1 and localhost, issued by a CA made at the first `up`:
# $SANDBOX_DIR/tls/ca.pem (a server tells its own: SELECT @@ssl_ca), so a
# client can connect with ssl-mode=VERIFY_IDENTITY to 127.0.0.1. Servers
# started before their my.cnf named the certificate offer no TLS until
# restarted (`up` says which).
#
# `up` is idempotent: running servers are left alone, stopped ones started,
# replicas re-attached and checked. A replica whose data went wrong is rebuilt
# from its primary's binary log: `down`, `rm -rf .sandbox/ds3-replica0`, `up`.
# `status` exits non-zero unless every server of the last `up` runs (and
# replicates).
# `--from-primary K` sets up only ds<K>.. and their replicas and leaves the
# lower ones entirely alone (not started, re-attached or waited for): it grows
# a running sandbox that others are using, e.g. `up --primaries 8
# --from-primary 4` adds ds4..ds7 (the migrator's tests need them) without
# restarting a replica someone stopped on purpose.
#
# Environment: SANDBOX_DIR, SANDBOX_PRIMARIES, SANDBOX_REPLICAS (flags win),
# SANDBOX_START_TIMEOUT (s, default 60), SANDBOX_STOP_TIMEOUT (s, default 30),
# MARIADBD (default /usr/sbin/mariadbd), SANDBOX_PORT_BASE (default 13306: the
# ports above shift with it; only for a second sandbox next to the usual one,
# e.g. SANDBOX_DIR=/tmp/sb2 SANDBOX_PORT_BASE=14306 - the tests expect 13306).
#
# The servers never read /etc/mysql (each runs with --defaults-file=its my.cnf,
# clients with --no-defaults), so a system MariaDB on 3306 is left alone.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${SANDBOX_DIR:-$REPO/.sandbox}
PRIMARIES=${SANDBOX_PRIMARIES:-4}
REPLICAS=${SANDBOX_REPLICAS:-2}
START_TIMEOUT=${SANDBOX_START_TIMEOUT:-60}
STOP_TIMEOUT=${SANDBOX_STOP_TIMEOUT:-30}
MARIADBD=${MARIADBD:-/usr/sbin/mariadbd}
FIRST_PRIMARY=0
PURGE=0

PRIMARY_PORT0= # set_ports
REPLICA_PORT0=
MAX_PRIMARIES=10 # ds10's primary port would be ds0-replica0's
MAX_REPLICAS=9
REPL_USER=repl
REPL_PASSWORD=repl
MARKER=.shardgate-sandbox
TEMPLATE=.template
TLS_DIR= # set_ports

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

die() {
  echo "sandbox: $*" >&2
  exit 1
}

log() {
  echo "sandbox: $*"
}

# ---------------------------------------------------------------- naming ----

primary_port() { echo $((PRIMARY_PORT0 + $1)); }
replica_port() { echo $((REPLICA_PORT0 + 10 * $2 + $1)); }
replica_name() { echo "ds$1-replica$2"; }

# port_of NAME
port_of() {
  if [[ $1 =~ ^ds([0-9]+)-replica([0-9]+)$ ]]; then
    replica_port "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
  elif [[ $1 =~ ^ds([0-9]+)$ ]]; then
    primary_port "${BASH_REMATCH[1]}"
  else
    die "not a sandbox server name: $1"
  fi
}

# Servers that exist under $BASE (in ds0, ds0-replica0, ..., ds1 order).
existing_servers() {
  local d name
  [[ -d $BASE ]] || return 0
  for d in "$BASE"/ds*/; do
    [[ -f $d/my.cnf ]] || continue
    name=$(basename "$d")
    if [[ $name =~ ^ds[0-9]+(-replica[0-9]+)?$ ]]; then
      echo "$name"
    fi
  done | sort -V
}

# in_topology NAME PRIMARIES REPLICAS
in_topology() {
  [[ $1 =~ ^ds([0-9]+)(-replica([0-9]+))?$ ]] || return 1
  ((BASH_REMATCH[1] < $2)) || return 1
  [[ -z ${BASH_REMATCH[3]} ]] || ((BASH_REMATCH[3] < $3))
}

# set_ports : SANDBOX_PORT_BASE, else the one of the last 'up' of $BASE, else 13306.
set_ports() {
  local base=${SANDBOX_PORT_BASE:-} line
  if [[ -z $base && -f $BASE/topology.env ]]; then
    while IFS= read -r line; do
      if [[ $line == SANDBOX_PORT_BASE=* ]]; then base=${line#*=}; fi
    done <"$BASE/topology.env"
  fi
  base=${base:-13306}
  if ! [[ $base =~ ^[0-9]+$ ]] || ((base < 1024 || base > 65000)); then
    die "bad SANDBOX_PORT_BASE: $base"
  fi
  PRIMARY_PORT0=$base
  REPLICA_PORT0=$((base + 10))
  TLS_DIR=$BASE/tls
}

# last_topology : prints "PRIMARIES REPLICAS" of the last successful 'up'.
last_topology() {
  local p=$PRIMARIES r=$REPLICAS line
  if [[ -f $BASE/topology.env ]]; then
    while IFS= read -r line; do
      case $line in
      SANDBOX_PRIMARIES=*) p=${line#*=} ;;
      SANDBOX_REPLICAS=*) r=${line#*=} ;;
      esac
    done <"$BASE/topology.env"
  fi
  echo "$p $r"
}

# ---------------------------------------------------------------- clients ---

# sql PORT STATEMENTS... : batch mode, no column names, no option files.
sql() {
  local port=$1
  shift
  mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" -uroot \
    --default-character-set=utf8mb4 --connect-timeout=3 -N -B -e "$*"
}

answers() { sql "$1" 'SELECT 1' >/dev/null 2>&1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# slave_field STATUS_TEXT FIELD : a field of `SHOW SLAVE STATUS\G` output.
slave_field() {
  awk -v f="$2" '{ k = $1; sub(/:$/, "", k) } k == f { sub(/^[^:]*: ?/, ""); print; exit }' <<<"$1"
}

slave_status() {
  mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$1" -uroot \
    --connect-timeout=3 -e 'SHOW SLAVE STATUS\G'
}

# ---------------------------------------------------------------- processes -

# pid_of NAME : prints the pid of NAME's mariadbd if it is running (checked
# against its command line, so a recycled pid is never mistaken for ours).
pid_of() {
  local dir=$BASE/$1 pid cmdline
  [[ -s $dir/mariadbd.pid ]] || return 1
  pid=$(<"$dir/mariadbd.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  [[ $cmdline == *"--defaults-file=$dir/my.cnf "* ]] || return 1
  echo "$pid"
}

# lock : one 'up' or 'down' at a time per sandbox (released on exit).
lock() {
  exec 9>"$BASE/.lock"
  if ! flock -n 9; then
    log "waiting for another 'up'/'down' of $BASE to finish"
    flock -w 300 9 || die "timed out waiting for the lock on $BASE/.lock"
  fi
}

# ---------------------------------------------------------------- config ----

# write_cnf NAME ROLE PORT
write_cnf() {
  local name=$1 role=$2 port=$3 dir=$BASE/$1 tmp
  mkdir -p "$dir/tmp"
  tmp=$(mktemp "$dir/my.cnf.XXXXXX")
  cat >"$tmp" <<EOF
# Generated by docker/sandbox.sh for $name ($role). Edits are overwritten by 'up'.
[mariadbd]
user                        = root
port                        = $port
bind-address                = 127.0.0.1
skip-name-resolve
host_cache_size             = 0
socket                      = $dir/mariadbd.sock
pid-file                    = $dir/mariadbd.pid
datadir                     = $dir/data
log-error                   = $dir/error.log
tmpdir                      = $dir/tmp

# identity and binary log (GTID replication; ROW format for the migrator's CDC)
server-id                   = $port
gtid-domain-id              = $((port - PRIMARY_PORT0))
gtid-strict-mode            = ON
log-bin                     = mariadb-bin
binlog-format               = ROW
binlog-row-metadata         = FULL
log-slave-updates           = ON
sync-binlog                 = 0

# what clients see
character-set-server        = utf8mb4
collation-server            = utf8mb4_general_ci
max-connections             = 500
max-allowed-packet          = 1G

# small footprint: up to 24 of these share a 2-core machine with the tests.
# The buffer pool holds a primary's share of bench/migrate.sh's 1,000,000
# rows in both layouts (~60 MB), as a production server holds its working
# set: with 32M the copy thrashed pages to disk. It is allocated as used.
performance-schema          = OFF
innodb-buffer-pool-size     = 256M
innodb-log-file-size        = 64M
innodb-log-buffer-size      = 2M
innodb-buffer-pool-load-at-startup = OFF
innodb-buffer-pool-dump-at-shutdown = OFF
innodb-flush-log-at-trx-commit = 2
innodb-doublewrite          = OFF
innodb-use-native-aio       = OFF
innodb-read-io-threads      = 1
innodb-write-io-threads     = 1
innodb-purge-threads        = 1
key-buffer-size             = 1M
aria-pagecache-buffer-size  = 8M
query-cache-type            = 0
query-cache-size            = 0
table-open-cache            = 400
table-definition-cache      = 400
thread-cache-size           = 16
tmp-table-size              = 16M
max-heap-table-size         = 16M

# TLS for clients that ask (see make_tls)
ssl-ca                      = $TLS_DIR/ca.pem
ssl-cert                    = $TLS_DIR/server-cert.pem
ssl-key                     = $TLS_DIR/server-key.pem
EOF
  if [[ $role == replica ]]; then
    cat >>"$tmp" <<EOF

# replica: read-only for clients, replication started by 'sandbox.sh up'
read-only                   = ON
skip-slave-start            = ON
relay-log                   = relay-bin
slave-net-timeout           = 10
EOF
  fi
  if cmp -s "$tmp" "$dir/my.cnf"; then
    rm -f "$tmp"
  else
    mv "$tmp" "$dir/my.cnf"
  fi
}

# make_tls : a CA and one server certificate (for 127.0.0.1 and localhost)
# that every server uses, made once and kept; EC keys, quick to make.
make_tls() {
  local tmp ext
  if [[ -s $TLS_DIR/ca.pem && -s $TLS_DIR/server-cert.pem && -s $TLS_DIR/server-key.pem ]]; then
    return 0
  fi
  command -v openssl >/dev/null || die "openssl not found (run scripts/install-deps.sh)"
  tmp=$(mktemp -d "$BASE/tls.XXXXXX")
  ext=$tmp/server.ext
  printf '%s\n' 'subjectAltName = IP:127.0.0.1, DNS:localhost' 'basicConstraints = critical, CA:FALSE' \
    'keyUsage = critical, digitalSignature, keyEncipherment' 'extendedKeyUsage = serverAuth' >"$ext"
  if ! {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=ShardGate sandbox CA" -addext 'basicConstraints = critical, CA:TRUE' \
      -addext 'keyUsage = critical, keyCertSign, cRLSign' \
      -keyout "$tmp/ca-key.pem" -out "$tmp/ca.pem" &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=localhost" -keyout "$tmp/server-key.pem" -out "$tmp/server.csr" &&
      openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" \
        -CAcreateserial -days 3650 -extfile "$ext" -out "$tmp/server-cert.pem"
  } >"$tmp/openssl.log" 2>&1; then
    cat "$tmp/openssl.log" >&2
    rm -rf "$tmp"
    die "could not make the TLS certificates"
  fi
  rm -rf "$TLS_DIR"
  mv "$tmp" "$TLS_DIR"
}

# warn_no_tls NAME : a server that was running already and offers no TLS
# (started before its my.cnf named the certificate).
warn_no_tls() {
  if [[ $(sql "$(port_of "$1")" 'SELECT @@have_ssl' 2>/dev/null) != YES ]]; then
    log "note: $1 offers no TLS (started before TLS was configured); 'down' and 'up' to restart it"
  fi
}

# make_template : one bootstrapped data directory (system tables, users) that
# every new server copies, which is much cheaper than a bootstrap per server.
# Rebuilt when the MariaDB version changes.
make_template() {
  local dir=$BASE/$TEMPLATE version
  version=$("$MARIADBD" --version)
  if [[ -d $dir/data/mysql && -f $dir/version ]] && [[ $(<"$dir/version") == "$version" ]]; then
    return 0
  fi
  rm -rf "$dir"
  write_cnf "$TEMPLATE" primary "$PRIMARY_PORT0" # bootstrapped only, never started
  # Runs inside the bootstrap (no binary log), so nothing here ever replicates.
  cat >"$dir/bootstrap.sql" <<EOF
FLUSH PRIVILEGES;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS '$REPL_USER'@'127.0.0.1' IDENTIFIED BY '$REPL_PASSWORD';
GRANT REPLICATION SLAVE ON *.* TO '$REPL_USER'@'127.0.0.1';
EOF
  if ! mariadb-install-db --defaults-file="$dir/my.cnf" \
    --auth-root-authentication-method=normal --skip-test-db \
    --extra-file="$dir/bootstrap.sql" >"$dir/install-db.log" 2>&1; then
    echo "sandbox: mariadb-install-db failed; see $dir/install-db.log; last lines of $dir/error.log:" >&2
    tail -n 20 "$dir/error.log" >&2 2>/dev/null || true
    rm -rf "$dir/data"
    die "could not initialise a data directory"
  fi
  rm -f "$dir/data/ibtmp1"
  echo "$version" >"$dir/version"
}

# init_datadir NAME : a copy of the template unless NAME already has a datadir.
init_datadir() {
  local dir=$BASE/$1
  if [[ -d $dir/data/mysql ]]; then
    return 0
  fi
  rm -rf "$dir/data" "$dir/data.new"
  cp -a "$BASE/$TEMPLATE/data" "$dir/data.new"
  mv "$dir/data.new" "$dir/data"
}

# ---------------------------------------------------------------- start -----

# start_server NAME : sets LAUNCHED to the new pid, or to "" if already running.
LAUNCHED=
start_server() {
  local name=$1 dir=$BASE/$1 port
  LAUNCHED=
  port=$(port_of "$name")
  if pid_of "$name" >/dev/null; then
    return 0
  fi
  if port_in_use "$port"; then
    die "$name: port $port is in use by a process that is not this sandbox's $name"
  fi
  rm -f "$dir/mariadbd.pid" "$dir/mariadbd.sock"
  # 9>&- : the server must not inherit (and so hold forever) the sandbox lock.
  # glibc malloc: without these a server that once handled big packets (the
  # tests send 16+ MiB ones) keeps hundreds of MiB; with them it returns them.
  MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=262144 MALLOC_TRIM_THRESHOLD_=262144 \
    setsid "$MARIADBD" --defaults-file="$dir/my.cnf" </dev/null >>"$dir/stdout.log" 2>&1 9>&- &
  LAUNCHED=$!
}

# wait_ready NAME [LAUNCHED_PID]
wait_ready() {
  local name=$1 launched=${2:-} port deadline
  port=$(port_of "$name")
  deadline=$((SECONDS + START_TIMEOUT))
  until answers "$port"; do
    if [[ -n $launched ]] && ! kill -0 "$launched" 2>/dev/null; then
      echo "sandbox: $name (port $port) exited during start-up; last lines of $BASE/$name/error.log:" >&2
      tail -n 25 "$BASE/$name/error.log" >&2 2>/dev/null || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "sandbox: $name (port $port) did not answer SELECT 1 within ${START_TIMEOUT}s; last lines of $BASE/$name/error.log:" >&2
      tail -n 25 "$BASE/$name/error.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

# attach_replica I R : points ds<I>-replica<R> at its primary and starts it.
attach_replica() {
  local i=$1 r=$2 port pport st host mport grants
  port=$(replica_port "$i" "$r")
  pport=$(primary_port "$i")
  st=$(slave_status "$port")
  host=$(slave_field "$st" Master_Host)
  mport=$(slave_field "$st" Master_Port)
  if [[ $host != 127.0.0.1 || $mport != "$pport" ]]; then
    [[ -z $st ]] || sql "$port" 'STOP SLAVE'
    sql "$port" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$pport,
      MASTER_USER='$REPL_USER', MASTER_PASSWORD='$REPL_PASSWORD',
      MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos"
  fi
  # read_only=ON binds root over TCP too (what the proxy and tests use), so a
  # write routed to a replica fails with 1290 instead of silently diverging.
  # root@localhost (the socket) keeps READ_ONLY ADMIN for manual repairs.
  grants=$(sql "$port" "SHOW GRANTS FOR 'root'@'127.0.0.1'")
  if [[ $grants == *"ALL PRIVILEGES"* || $grants == *"READ_ONLY ADMIN"* ]]; then
    sql "$port" "SET SESSION sql_log_bin=0; REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'127.0.0.1'"
  fi
  # A no-op (with a note) when both threads already run.
  sql "$port" 'START SLAVE' >/dev/null
}

# wait_replica I R GTID_POS : both threads running, caught up to GTID_POS, and
# the primary's database present.
wait_replica() {
  local i=$1 r=$2 pos=${3:-} name port deadline st io sqlt err caught
  name=$(replica_name "$i" "$r")
  port=$(replica_port "$i" "$r")
  deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    st=$(slave_status "$port" 2>/dev/null || true)
    io=$(slave_field "$st" Slave_IO_Running)
    sqlt=$(slave_field "$st" Slave_SQL_Running)
    [[ $io == Yes && $sqlt == Yes ]] && break
    err="$(slave_field "$st" Last_IO_Error) $(slave_field "$st" Last_SQL_Error)"
    # A thread that stopped on an error stays stopped: say so now.
    if [[ ($io == No || $sqlt == No) && $err != " " ]] || ((SECONDS >= deadline)); then
      echo "sandbox: $name: replication is not running (IO=$io SQL=$sqlt) ${err}" >&2
      return 1
    fi
    sleep 0.2
  done
  caught=$(sql "$port" "SELECT MASTER_GTID_WAIT('$pos', $START_TIMEOUT)")
  if [[ $caught != 0 ]]; then
    echo "sandbox: $name did not reach its primary's GTID position $pos within ${START_TIMEOUT}s" >&2
    return 1
  fi
  if [[ -z $(sql "$port" "SHOW DATABASES LIKE 'ds$i'") ]]; then
    echo "sandbox: $name caught up but has no database ds$i (was its data directory seeded elsewhere?)" >&2
    return 1
  fi
}

# run_all WHAT FUNCTION ARGSETS... : runs FUNCTION once per ARGSET (words split
# on spaces) in parallel, and dies naming WHAT if any run failed. Call it as a
# plain statement (not after `if`/`||`) so that `set -e` holds inside the runs.
run_all() {
  local what=$1 fn=$2 pids=() p failed=0 args
  shift 2
  for args in "$@"; do
    # shellcheck disable=SC2086 # ARGSETS are deliberately word-split
    "$fn" $args &
    pids+=("$!")
  done
  for p in "${pids[@]}"; do
    wait "$p" || failed=1
  done
  ((failed == 0)) || die "$what failed (see above; 'docker/sandbox.sh status')"
}

cmd_up() {
  local t0=$SECONDS i r name servers=() replicas=() launched=() pos
  command -v "$MARIADBD" >/dev/null || die "$MARIADBD not found (run scripts/install-deps.sh)"
  command -v mariadb-install-db >/dev/null || die "mariadb-install-db not found (run scripts/install-deps.sh)"
  command -v mariadb >/dev/null || die "mariadb client not found (run scripts/install-deps.sh)"
  if ! [[ $PRIMARIES =~ ^[0-9]+$ ]] || ((PRIMARIES < 1 || PRIMARIES > MAX_PRIMARIES)); then
    die "--primaries must be 1..$MAX_PRIMARIES (got '$PRIMARIES')"
  fi
  if ! [[ $REPLICAS =~ ^[0-9]+$ ]] || ((REPLICAS > MAX_REPLICAS)); then
    die "--replicas must be 0..$MAX_REPLICAS (got '$REPLICAS')"
  fi
  if ! [[ $FIRST_PRIMARY =~ ^[0-9]+$ ]] || ((FIRST_PRIMARY >= PRIMARIES)); then
    die "--from-primary must be 0..$((PRIMARIES - 1)) (got '$FIRST_PRIMARY')"
  fi

  # a unix socket path is limited to 107 bytes
  local longest_socket=$BASE/ds0-replica0/mariadbd.sock
  if ((${#longest_socket} > 107)); then
    die "SANDBOX_DIR is too long for the servers' unix sockets: $BASE"
  fi
  mkdir -p "$BASE"
  touch "$BASE/$MARKER"
  lock
  make_tls
  for ((i = FIRST_PRIMARY; i < PRIMARIES; i++)); do
    write_cnf "ds$i" primary "$(primary_port "$i")"
    servers+=("ds$i")
    for ((r = 0; r < REPLICAS; r++)); do
      name=$(replica_name "$i" "$r")
      write_cnf "$name" replica "$(replica_port "$i" "$r")"
      servers+=("$name")
      replicas+=("$i $r")
    done
  done

  # 1. data directories: new ones are copies of a template
  for name in "${servers[@]}"; do
    if [[ ! -d $BASE/$name/data/mysql ]]; then
      make_template
      break
    fi
  done
  run_all "initialising data directories" init_datadir "${servers[@]}"

  # 2. start what is not running, then wait for every server
  local already=()
  for name in "${servers[@]}"; do
    start_server "$name"
    launched+=("$name $LAUNCHED")
    [[ -n $LAUNCHED ]] || already+=("$name")
  done
  run_all "starting servers" wait_ready "${launched[@]}"
  for name in "${already[@]}"; do
    warn_no_tls "$name"
  done

  # 3. replicas follow their primaries (before any database exists, so the
  #    CREATE DATABASE below replicates like everything after it)
  if ((${#replicas[@]})); then
    run_all "attaching replicas" attach_replica "${replicas[@]}"
  fi

  # 4. the physical databases, on the primaries only
  for ((i = FIRST_PRIMARY; i < PRIMARIES; i++)); do
    if [[ -z $(sql "$(primary_port "$i")" "SHOW DATABASES LIKE 'ds$i'") ]]; then
      sql "$(primary_port "$i")" "CREATE DATABASE \`ds$i\`"
    fi
  done

  # 5. every replica running and caught up
  if ((${#replicas[@]})); then
    local waits=()
    for ((i = FIRST_PRIMARY; i < PRIMARIES; i++)); do
      pos=$(sql "$(primary_port "$i")" 'SELECT @@gtid_binlog_pos')
      for ((r = 0; r < REPLICAS; r++)); do
        waits+=("$i $r $pos")
      done
    done
    run_all "waiting for replication" wait_replica "${waits[@]}"
  fi

  printf 'SANDBOX_PRIMARIES=%s\nSANDBOX_REPLICAS=%s\nSANDBOX_PORT_BASE=%s\n' \
    "$PRIMARIES" "$REPLICAS" "$PRIMARY_PORT0" >"$BASE/topology.env"
  local extra=()
  while read -r name; do
    if [[ -n $name ]] && ! in_topology "$name" "$PRIMARIES" "$REPLICAS" && pid_of "$name" >/dev/null; then
      extra+=("$name")
    fi
  done < <(existing_servers)
  if ((${#extra[@]})); then
    log "note: still running from an earlier 'up', outside this topology: ${extra[*]} ('down' stops them)"
  fi
  log "up: $PRIMARIES primaries (ports $(primary_port 0)..$(primary_port $((PRIMARIES - 1)))), $REPLICAS replica(s) each, in $((SECONDS - t0))s; data in $BASE"
  log "connect: mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P$(primary_port 0) -uroot ds0"
}

# ---------------------------------------------------------------- down ------

cmd_down() {
  local name pid names=() deadline left n
  [[ -d $BASE ]] && lock
  while read -r name; do
    [[ -n $name ]] || continue
    if pid=$(pid_of "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      names+=("$name")
    fi
  done < <(existing_servers)
  deadline=$((SECONDS + STOP_TIMEOUT))
  while :; do
    left=0
    for n in "${!names[@]}"; do
      pid_of "${names[$n]}" >/dev/null && left=$((left + 1))
    done
    ((left == 0)) && break
    if ((SECONDS >= deadline)); then
      for n in "${!names[@]}"; do
        if pid=$(pid_of "${names[$n]}"); then
          echo "sandbox: ${names[$n]} did not stop within ${STOP_TIMEOUT}s; sending SIGKILL" >&2
          kill -KILL "$pid" 2>/dev/null || true
        fi
      done
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  log "down: stopped ${#names[@]} server(s)"
  if ((PURGE)); then
    if [[ -d $BASE ]]; then
      [[ -f $BASE/$MARKER ]] || die "refusing to purge $BASE: no $MARKER marker (not created by this script)"
      rm -rf -- "$BASE"
      log "purged $BASE"
    fi
  fi
}

# ---------------------------------------------------------------- status ----

# Exit status 0 when every server of the last 'up' runs (and replicates).
# Servers left over from a larger earlier 'up' are listed but do not count.
cmd_status() {
  local name port role state lag io sqlt note st err bad=0 any=0 tp tr wanted
  read -r tp tr < <(last_topology)
  printf '%-16s %-6s %-8s %-8s %-5s %-4s %-4s %s\n' NAME PORT ROLE STATE LAG IO SQL NOTE
  while read -r name; do
    [[ -n $name ]] || continue
    any=1
    port=$(port_of "$name")
    lag=- io=- sqlt=- note='' wanted=1
    in_topology "$name" "$tp" "$tr" || wanted=0
    if [[ $name == *-replica* ]]; then role=replica; else role=primary; fi
    if ! pid_of "$name" >/dev/null; then
      state=stopped
    elif ! answers "$port"; then
      state=starting
    else
      state=running
      if [[ $role == replica ]]; then
        st=$(slave_status "$port" 2>/dev/null || true)
        if [[ -z $st ]]; then
          note="not attached"
          state=detached
        else
          io=$(slave_field "$st" Slave_IO_Running)
          sqlt=$(slave_field "$st" Slave_SQL_Running)
          lag=$(slave_field "$st" Seconds_Behind_Master)
          err="$(slave_field "$st" Last_IO_Error)$(slave_field "$st" Last_SQL_Error)"
          note="gtid=$(slave_field "$st" Gtid_IO_Pos)${err:+ error: $err}"
          [[ $io == Yes && $sqlt == Yes ]] || state=broken
        fi
      else
        note="gtid=$(sql "$port" 'SELECT @@gtid_binlog_pos' 2>/dev/null || true)"
      fi
    fi
    if ((wanted)); then
      [[ $state == running ]] || bad=1
    else
      note="(not in last 'up': --primaries $tp --replicas $tr)${note:+ $note}"
    fi
    printf '%-16s %-6s %-8s %-8s %-5s %-4s %-4s %s\n' "$name" "$port" "$role" "$state" "${lag:--}" "${io:--}" "${sqlt:--}" "$note"
  done < <(existing_servers)
  if ((!any)); then
    echo "(no sandbox in $BASE; run: docker/sandbox.sh up)"
    return 1
  fi
  return "$bad"
}

# ---------------------------------------------------------------- main ------

main() {
  local cmd=${1:-}
  [[ -n $cmd ]] || {
    usage
    exit 2
  }
  shift
  while (($#)); do
    case $1 in
    --replicas) REPLICAS=${2:?--replicas needs a number}; shift 2 ;;
    --replicas=*) REPLICAS=${1#*=}; shift ;;
    --primaries) PRIMARIES=${2:?--primaries needs a number}; shift 2 ;;
    --primaries=*) PRIMARIES=${1#*=}; shift ;;
    --from-primary) FIRST_PRIMARY=${2:?--from-primary needs a number}; shift 2 ;;
    --from-primary=*) FIRST_PRIMARY=${1#*=}; shift ;;
    --dir) BASE=${2:?--dir needs a path}; shift 2 ;;
    --dir=*) BASE=${1#*=}; shift ;;
    --purge) PURGE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
  done
  [[ $BASE == /* ]] || BASE=$PWD/$BASE
  set_ports
  case $cmd in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *) usage >&2; die "unknown command: $cmd" ;;
  esac
}

main "$@"
