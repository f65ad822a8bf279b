#!/usr/bin/env bash
# Installs what ShardGate's sandbox, tests and benchmark need on Debian 12 and
# nothing that is already there. Safe to run again; prints what it installs.
#
#   Debian packages: mariadb-server mariadb-client (the sandbox's servers and
#     the CLI driver), openssl (the sandbox's TLS certificates),
#     libmariadb-java (Connector/J for the JDBC test),
#     sysbench and haproxy (the benchmark), chromium (the dashboard's
#     browser test), nftables and iproute2 (the packet-loss fault test:
#     a network namespace whose nftables rules drop packets);
#     default-jdk-headless only when javac is missing, nodejs/npm only when
#     node/npm are missing.
#   PyMySQL for python3 (pip; Debian's python3-pymysql when pip cannot).
#   schemathesis 4.x in a virtualenv at .venv (git-ignored) for the admin
#     API's contract test; python3-venv when python3 cannot make one.
#   SQLAlchemy 2.0, pytest and PyMySQL (pinned) in the same .venv for
#     SQLAlchemy's dialect compliance suite (tests/e2e/peer_sqlalchemy.rs).
#   Django 5.2 and mysqlclient (pinned) in the same .venv for the Django
#     test (tests/e2e/peer_django.rs); libmariadb-dev, pkg-config, python3-dev
#     and gcc to build mysqlclient.
#   npm package mysql2 in integration-tests/drivers/node.
#   npm package playwright-core in integration-tests/drivers/browser (it
#     drives Debian's chromium; it downloads no browser of its own).
#
#   rustfmt and clippy via rustup when cargo lacks them.
#
# Runs as root, or through sudo when it is available. Rust itself is not
# installed here (see https://rustup.rs).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE_DIR=$REPO/integration-tests/drivers/node
BROWSER_DIR=$REPO/integration-tests/drivers/browser

say() { echo "install-deps: $*"; }
die() {
  echo "install-deps: $*" >&2
  exit 1
}

SUDO=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || die "run as root (or install sudo)"
  SUDO=(sudo)
fi

installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# apt-get update at most once per run, and only when the package lists are
# missing or older than a day (or an install failed on stale lists).
UPDATED=0
apt_update() {
  ((UPDATED)) && return 0
  say "apt-get update"
  "${SUDO[@]}" apt-get update -qq
  UPDATED=1
}

apt_install() {
  (($#)) || return 0
  if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n 1) ]]; then
    apt_update
  fi
  say "apt-get install $*"
  if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
    ((UPDATED)) && die "apt-get install $* failed"
    apt_update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
  fi
}

# ------------------------------------------------------------ Debian packages

missing=()
for pkg in mariadb-server mariadb-client openssl libmariadb-java sysbench haproxy chromium nftables iproute2; do
  installed "$pkg" || missing+=("$pkg")
done
command -v javac >/dev/null || missing+=(default-jdk-headless)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v python3 >/dev/null || missing+=(python3)
apt_install "${missing[@]}"

[[ -f /usr/share/java/mariadb-java-client.jar ]] ||
  die "libmariadb-java is installed but /usr/share/java/mariadb-java-client.jar is missing"

# ------------------------------------------------------------ PyMySQL

if ! python3 -c 'import pymysql' 2>/dev/null; then
  say "pip install pymysql (for $(command -v python3))"
  if ! python3 -m pip install --quiet --disable-pip-version-check pymysql; then
    # Debian's own python3 refuses pip installs (PEP 668): use its package.
    say "pip could not install it; using Debian's python3-pymysql"
    apt_install python3-pymysql
  fi
  python3 -c 'import pymysql' || die "python3 still cannot import pymysql"
fi

# ------------------------------------------------------------ schemathesis

# integration-tests/tests/e2e/admin_api.rs runs it against the admin API. A venv
# keeps its many dependencies apart from the system's Python packages, and
# needs neither root nor --user; the test looks for .venv/bin/schemathesis.
VENV=$REPO/.venv
ensure_venv() {
  if ! "$VENV/bin/python" -c '' 2>/dev/null; then
    say "python3 -m venv $VENV"
    if ! python3 -m venv "$VENV"; then
      # Debian's own python3 ships venv (and ensurepip) separately.
      rm -rf "$VENV"
      apt_install python3-venv
      python3 -m venv "$VENV"
    fi
  fi
}
if ! "$VENV/bin/schemathesis" --version >/dev/null 2>&1; then
  ensure_venv
  say "pip install schemathesis (in $VENV)"
  # 4.x: the test's command line (checks, phases) is that major version's.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
  "$VENV/bin/schemathesis" --version >/dev/null || die "schemathesis does not run from $VENV"
fi

# ------------------------------------------------------------ SQLAlchemy's suite

# integration-tests/tests/e2e/peer_sqlalchemy.rs runs SQLAlchemy's dialect
# compliance suite (shipped in its wheel) with pytest and PyMySQL from the
# same venv. Pinned: the requirements class in integration-tests/drivers/
# sqlalchemy/ is written for this SQLAlchemy; this pytest is one that both
# SQLAlchemy 2.0 and schemathesis 4.x take.
SQLA_PINS=(SQLAlchemy==2.0.58 pytest==9.2.0 PyMySQL==1.2.4)
# Whether the venv holds exactly these pinned packages (name==version ...).
venv_has() {
  [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c '
import sys
from importlib.metadata import version
sys.exit(any(version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
' "$@" 2>/dev/null
}
sqla_pinned() { venv_has "${SQLA_PINS[@]}"; }
if ! sqla_pinned; then
  ensure_venv
  say "pip install ${SQLA_PINS[*]} (in $VENV)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${SQLA_PINS[@]}"
  sqla_pinned || die "$VENV lacks ${SQLA_PINS[*]} after pip install"
fi

# ------------------------------------------------------------ Django

# integration-tests/tests/e2e/peer_django.rs runs a Django program
# (integration-tests/drivers/django/) on Django's MySQL backend with
# mysqlclient, Django's supported driver, from the same venv. mysqlclient is
# a C extension: pip builds it against MariaDB's client library
# (libmariadb-dev, found through pkg-config) and Python's headers. Pinned, so
# that both runs of the test and every machine send the same SQL.
DJANGO_PINS=(Django==5.2.19 mysqlclient==2.3.2)
django_pinned() { venv_has "${DJANGO_PINS[@]}"; }
if ! django_pinned; then
  ensure_venv
  build=()
  for pkg in libmariadb-dev pkg-config python3-dev gcc; do
    installed "$pkg" || build+=("$pkg")
  done
  apt_install "${build[@]}"
  say "pip install ${DJANGO_PINS[*]} (in $VENV)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${DJANGO_PINS[@]}"
  django_pinned || die "$VENV lacks ${DJANGO_PINS[*]} after pip install"
  "$VENV/bin/python" -c 'import MySQLdb' || die "mysqlclient does not import in $VENV"
fi

# ------------------------------------------------------------ node mysql2

if [[ ! -d $NODE_DIR/node_modules/mysql2 ]]; then
  mkdir -p "$NODE_DIR"
  if [[ ! -f $NODE_DIR/package.json ]]; then
    say "creating $NODE_DIR/package.json"
    cat >"$NODE_DIR/package.json" <<'EOF'
{
  "name": "shardgate-driver-node",
  "version": "0.0.0",
  "private": true,
  "description": "ShardGate integration test: node mysql2 with execute() (binary protocol)",
  "license": "Apache-2.0",
  "dependencies": {
    "mysql2": "^3.11.0"
  }
}
EOF
  fi
  say "npm install in $NODE_DIR"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error)
fi

# ------------------------------------------------------------ node playwright-core

# The versions pinned by the committed package-lock.json (npm ci).
if [[ ! -d $BROWSER_DIR/node_modules/playwright-core ]]; then
  [[ -f $BROWSER_DIR/package-lock.json ]] || die "$BROWSER_DIR/package-lock.json is missing"
  say "npm ci in $BROWSER_DIR (playwright-core)"
  (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

# ------------------------------------------------------------ Rust components

if command -v cargo >/dev/null; then
  for comp in rustfmt clippy; do
    if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
      command -v rustup >/dev/null || die "cargo ${comp/rustfmt/fmt} is missing and rustup is not available"
      say "rustup component add $comp"
      rustup component add "$comp"
    fi
  done
else
  say "warning: cargo not found; install Rust from https://rustup.rs (the tests need it)"
fi

say "ok: mariadbd $(/usr/sbin/mariadbd --version | awk '{print $3}'), $(sysbench --version), $(haproxy -v | head -n 1 | awk '{print "haproxy", $3}'), node $(node --version), $(javac -version 2>&1), PyMySQL $(python3 -c 'import pymysql; print(pymysql.__version__)'), $(/usr/bin/chromium --version 2>/dev/null | awk '{print $1, $2}'), $("$VENV/bin/schemathesis" --version), ${SQLA_PINS[*]}, ${DJANGO_PINS[*]}"
