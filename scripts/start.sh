#!/usr/bin/env bash
# Brings up the local sandbox (4 MariaDB primaries ds0..ds3, 2 replicas each),
# builds ShardGate and runs it in the foreground with the seed's topology
# (examples/wework.toml). Ctrl-C stops ShardGate; `docker/sandbox.sh down`
# stops the sandbox.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

scripts/install-deps.sh
docker/sandbox.sh up
cargo build --release -p shardgate-proxy
echo
echo "Connect with: mysql -h127.0.0.1 -P3307 -uroot wework"
echo
exec target/release/shardgate --config examples/wework.toml
