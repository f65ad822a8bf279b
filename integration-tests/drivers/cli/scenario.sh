#!/usr/bin/env bash
# ShardGate driver scenario: the `mariadb` command-line client (text protocol,
# server-side PREPARE/EXECUTE through SQL, user variables).
#
# Usage: scenario.sh HOST PORT USER PASSWORD DATABASE
#   (or env SG_HOST, SG_PORT, SG_USER, SG_PASSWORD, SG_DATABASE)
#
# The transcript is the client's own output (stdout and stderr interleaved, in
# --batch --raw mode, flushed after every statement). It must be identical
# against ds0 directly and through ShardGate, so nothing prints the database
# name, connection ids, versions or timings.
set -u

HOST=${1:-${SG_HOST:-127.0.0.1}}
PORT=${2:-${SG_PORT:-13306}}
USER_=${3:-${SG_USER:-root}}
PASS=${4-${SG_PASSWORD:-}}
DB=${5:-${SG_DATABASE:-ds0}}
T=it_cli

CLIENT=$(command -v mariadb || command -v mysql) || { echo "mariadb client not found" >&2; exit 127; }

# 100,000 deterministic bytes ((i*31+7) mod 256), as a hex literal: the same
# blob every other driver inserts.
pattern=""
for ((i = 0; i < 256; i++)); do pattern+=$(printf '%02X' $(((i * 31 + 7) % 256))); done
big=""
for ((i = 0; i < 390; i++)); do big+=$pattern; done
big+=${pattern:0:320} # 390*256 + 160 = 100000 bytes

args=(--no-defaults --batch --raw --force --unbuffered --default-character-set=utf8mb4
      --connect-timeout=10 -h "$HOST" -P "$PORT" -u "$USER_" -D "$DB")
# SG_TLS_CA: connect over TLS, verifying the server's certificate and name.
[[ -n ${SG_TLS_CA:-} ]] && args+=(--ssl --ssl-ca="$SG_TLS_CA" --ssl-verify-server-cert)
export MYSQL_PWD="$PASS"

"$CLIENT" "${args[@]}" -e "DROP TABLE IF EXISTS $T" || exit 1
"$CLIENT" "${args[@]}" 2>&1 <<SQL
DROP TABLE IF EXISTS $T;
SELECT @@warning_count AS drop_warnings;
CREATE TABLE $T (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  qty INT NULL,
  price DECIMAL(20,6) NULL,
  ratio DOUBLE NULL,
  day DATE NULL,
  created DATETIME NULL,
  created6 DATETIME(6) NULL,
  data MEDIUMBLOB NULL,
  note TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  UNIQUE KEY uk_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
SELECT 'step insert_literal' AS step;
INSERT INTO $T (name, qty, price, ratio, day, created, created6, data, note) VALUES
  ('alpha', 1, 12.5, 0.25, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05.123456', X'00FF01', 'plain ascii');
SELECT ROW_COUNT() AS affected, LAST_INSERT_ID() AS insert_id;
SELECT 'step insert_multi' AS step;
INSERT INTO $T (name, qty, price, ratio) VALUES ('beta', 2, -0.000001, -1.5), ('gamma', 3, 0, 1e100);
SELECT ROW_COUNT() AS affected, LAST_INSERT_ID() AS insert_id;
SELECT 'step select_all' AS step;
SELECT id, name, qty, price, ratio, day, created, created6, HEX(data), note FROM $T ORDER BY id;
SELECT 'step select_raw_blob' AS step;
SELECT id, data FROM $T WHERE id = 1;
SELECT 'step update' AS step;
UPDATE $T SET qty = qty + 10 WHERE id <= 2;
SELECT ROW_COUNT() AS affected;
SELECT 'step prepared_insert_types' AS step;
PREPARE ins FROM 'INSERT INTO $T (name, qty, price, ratio, day, created, created6, data, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)';
SET @name = 'prep-types', @qty = 42, @price = CAST('12345678901234.123456' AS DECIMAL(20,6)), @ratio = 3.25e0,
    @day = DATE '2024-12-31', @created = TIMESTAMP '2024-02-29 23:59:59', @created6 = TIMESTAMP '2024-02-29 23:59:59.654321',
    @data = X'00FF017F8000275C220A', @note = _utf8mb4'🦀 crab 漢字 ünïcödé ''quoted'' \\\\ backslash';
EXECUTE ins USING @name, @qty, @price, @ratio, @day, @created, @created6, @data, @note;
SELECT ROW_COUNT() AS affected, LAST_INSERT_ID() AS insert_id;
SELECT 'step prepared_insert_nulls' AS step;
SET @name = 'prep-nulls';
EXECUTE ins USING @name, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL;
SELECT ROW_COUNT() AS affected, LAST_INSERT_ID() AS insert_id;
SELECT 'step prepared_insert_bigblob' AS step;
SET @name = 'prep-bigblob', @qty = 7, @price = CAST('-99999999999999.999999' AS DECIMAL(20,6)), @ratio = 0.5e0, @note = 'big';
SET @big = X'$big';
EXECUTE ins USING @name, @qty, @price, @ratio, NULL, NULL, NULL, @big, @note;
SELECT ROW_COUNT() AS affected, LAST_INSERT_ID() AS insert_id;
DEALLOCATE PREPARE ins;
SELECT 'step prepared_select' AS step;
PREPARE sel FROM 'SELECT id, name, qty, note FROM $T WHERE id >= ? AND name <> ? ORDER BY id';
SET @min_id = 2, @skip = 'gamma';
EXECUTE sel USING @min_id, @skip;
DEALLOCATE PREPARE sel;
SELECT 'step prepared_select_null' AS step;
PREPARE sel FROM 'SELECT id, name FROM $T WHERE qty <=> ? ORDER BY id';
EXECUTE sel USING NULL;
DEALLOCATE PREPARE sel;
SELECT 'step select_unicode' AS step;
SELECT id, note, CHAR_LENGTH(note), LENGTH(note), HEX(note) FROM $T WHERE note LIKE '%🦀%' ORDER BY id;
SELECT 'step select_bigblob' AS step;
SELECT id, LENGTH(data), SHA2(data, 256), SHA2(X'$big', 256) = SHA2(data, 256) AS same FROM $T WHERE name = 'prep-bigblob';
SELECT 'step select_typed' AS step;
SELECT price, created6, CAST(created6 AS CHAR), price * 2, DATE_FORMAT(created, '%Y/%m/%d') FROM $T WHERE name = 'prep-types';
SELECT 'step txn_rollback' AS step;
BEGIN;
INSERT INTO $T (name, qty) VALUES ('txn-rollback', 1);
SELECT COUNT(*) AS visible_inside FROM $T WHERE name = 'txn-rollback';
ROLLBACK;
SELECT COUNT(*) AS after_rollback FROM $T WHERE name = 'txn-rollback';
SELECT 'step txn_commit' AS step;
START TRANSACTION;
INSERT INTO $T (name, qty) VALUES ('txn-commit', 2);
SELECT LAST_INSERT_ID() AS insert_id;
COMMIT;
SELECT id, name, qty FROM $T WHERE name = 'txn-commit';
SELECT 'step error_syntax' AS step;
SELEC 1;
SELECT 1 AS ok;
SELECT 'step error_duplicate' AS step;
INSERT INTO $T (name) VALUES ('alpha');
SELECT COUNT(*) AS n FROM $T;
SELECT 'step error_unknown_column' AS step;
SELECT no_such_column FROM $T;
SELECT 2 AS ok;
SELECT 'step user_variables' AS step;
SET @v = 42, @s = '漢字🦀';
SELECT @v, @s, HEX(@s);
SELECT 'step select_final' AS step;
SELECT id, name, qty, price, ratio, day, created, created6, IF(LENGTH(data) > 64, CONCAT('len=', LENGTH(data), ',sha256=', SHA2(data, 256)), HEX(data)) AS data, note FROM $T ORDER BY id;
SELECT 'step done' AS step;
SQL
