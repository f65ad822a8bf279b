#!/usr/bin/env node
// ShardGate driver scenario: node mysql2 with execute() (binary protocol:
// COM_STMT_PREPARE / COM_STMT_EXECUTE / COM_STMT_CLOSE).
//
// Usage: node scenario.js HOST PORT USER PASSWORD DATABASE
//   (or env SG_HOST, SG_PORT, SG_USER, SG_PASSWORD, SG_DATABASE)
//
// Prints a canonical transcript, one JSON object per line. It must be
// identical against ds0 directly and through ShardGate, so nothing prints the
// database name, connection ids, server version or timings.
'use strict';

process.env.TZ = 'UTC';
const crypto = require('crypto');
const mysql = require('mysql2/promise');

const TABLE = 'it_node';
const SMALL_BLOB = Buffer.from([0x00, 0xff, 0x01, 0x7f, 0x80, 0x00, 0x27, 0x5c, 0x22, 0x0a]);
const BIG_BLOB = Buffer.alloc(100000);
for (let i = 0; i < BIG_BLOB.length; i++) BIG_BLOB[i] = (i * 31 + 7) % 256;
const UNICODE_TEXT = "🦀 crab 漢字 ünïcödé 'quoted' \\ backslash";

function render(v) {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v)) {
    if (v.length <= 64) return 'hex:' + v.toString('hex');
    return `bytes:len=${v.length},sha256=${crypto.createHash('sha256').update(v).digest('hex')}`;
  }
  if (typeof v === 'bigint') return 'bigint:' + v.toString();
  if (typeof v === 'number') return 'num:' + String(v);
  if (typeof v === 'boolean') return v;
  if (v instanceof Date) return 'date:' + v.toISOString();
  if (typeof v === 'string') return v;
  return typeof v + ':' + JSON.stringify(v);
}

function emit(rec) {
  process.stdout.write(JSON.stringify(rec) + '\n');
}

function describeFields(fields) {
  return fields.map((f) => ({
    name: f.name,
    orgName: f.orgName,
    table: f.table,
    type: f.columnType,
    length: f.columnLength,
    decimals: f.decimals,
    charset: f.characterSet,
    flags: f.flags,
  }));
}

async function run(conn, step, sql, params, viaQuery) {
  const rec = { step };
  try {
    const [result, fields] = viaQuery ? await conn.query(sql, params) : await conn.execute(sql, params);
    if (Array.isArray(result)) {
      rec.columns = describeFields(fields || []);
      rec.rows = result.map((row) => row.map(render));
    } else {
      rec.affected = result.affectedRows;
      rec.insert_id = result.insertId;
      rec.changed = result.changedRows;
      rec.warnings = result.warningStatus;
      rec.info = result.info;
    }
  } catch (e) {
    if (e.errno === undefined) throw e; // not a server error: a driver/proxy failure
    rec.error = { code: e.errno, sqlstate: e.sqlState, name: e.code, message: e.sqlMessage };
  }
  emit(rec);
  return rec;
}

async function call(step, fn) {
  const rec = { step };
  try {
    await fn();
    rec.ok = true;
  } catch (e) {
    if (e.errno === undefined) throw e;
    rec.error = { code: e.errno, sqlstate: e.sqlState, name: e.code, message: e.sqlMessage };
  }
  emit(rec);
}

async function main() {
  const a = process.argv.slice(2);
  const env = process.env;
  const cfg = {
    host: a[0] || env.SG_HOST || '127.0.0.1',
    port: Number(a[1] || env.SG_PORT || 13306),
    user: a[2] || env.SG_USER || 'root',
    password: a.length > 3 ? a[3] : env.SG_PASSWORD || '',
    database: a[4] || env.SG_DATABASE || 'ds0',
    charset: 'UTF8MB4_UNICODE_CI',
    timezone: 'Z',
    dateStrings: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    rowsAsArray: true,
    connectTimeout: 10000,
  };
  // SG_TLS_CA: TLS, verifying the server's certificate and name.
  if (env.SG_TLS_CA) {
    cfg.ssl = { ca: require('fs').readFileSync(env.SG_TLS_CA), rejectUnauthorized: true };
  }
  const conn = await mysql.createConnection(cfg);
  const t = TABLE;
  const cols = 'id, name, qty, price, ratio, day, created, created6, data, note';

  await conn.query(`DROP TABLE IF EXISTS ${t}`); // not in the transcript: leftovers of an earlier run
  await run(conn, 'drop_table', `DROP TABLE IF EXISTS ${t}`); // always a note (1051): the table is gone
  await run(
    conn,
    'create_table',
    `CREATE TABLE ${t} (` +
      ' id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,' +
      ' name VARCHAR(64) NOT NULL,' +
      ' qty INT NULL,' +
      ' price DECIMAL(20,6) NULL,' +
      ' ratio DOUBLE NULL,' +
      ' day DATE NULL,' +
      ' created DATETIME NULL,' +
      ' created6 DATETIME(6) NULL,' +
      ' data MEDIUMBLOB NULL,' +
      ' note TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,' +
      ' UNIQUE KEY uk_name (name)' +
      ') ENGINE=InnoDB DEFAULT CHARSET=utf8mb4',
  );
  await call('ping', () => conn.ping());
  await run(
    conn,
    'insert_literal',
    `INSERT INTO ${t} (name, qty, price, ratio, day, created, created6, data, note) VALUES ` +
      "('alpha', 1, 12.5, 0.25, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05.123456', X'00FF01', 'plain ascii')",
  );
  await run(conn, 'insert_multi', `INSERT INTO ${t} (name, qty, price, ratio) VALUES ('beta', 2, -0.000001, -1.5), ('gamma', 3, 0, 1e100)`);
  await run(conn, 'select_all', `SELECT ${cols} FROM ${t} ORDER BY id`);
  await run(conn, 'select_all_text', `SELECT ${cols} FROM ${t} ORDER BY id`, [], true);
  await run(conn, 'update', `UPDATE ${t} SET qty = qty + ? WHERE id <= ?`, [10, 2]);
  await run(conn, 'update_nochange', `UPDATE ${t} SET qty = qty WHERE id = ?`, [1]);

  const ins = `INSERT INTO ${t} (name, qty, price, ratio, day, created, created6, data, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;
  await run(conn, 'prepared_insert_types', ins, [
    'prep-types',
    42n, // LONGLONG
    '12345678901234.123456', // DECIMAL(20,6) as string
    3.25, // DOUBLE
    '2024-12-31',
    new Date(Date.UTC(2024, 1, 29, 23, 59, 59)), // DATETIME
    '2024-02-29 23:59:59.654321', // DATETIME(6): JS dates stop at milliseconds
    SMALL_BLOB,
    UNICODE_TEXT,
  ]);
  await run(conn, 'prepared_insert_nulls', ins, ['prep-nulls', null, null, null, null, null, null, null, null]);
  await run(conn, 'prepared_insert_bigblob', ins, ['prep-bigblob', 7, '-99999999999999.999999', 0.5, null, null, null, BIG_BLOB, 'big']);
  await run(conn, 'prepared_insert_date_ms', `INSERT INTO ${t} (name, created6) VALUES (?, ?)`, [
    'prep-date-ms',
    new Date(Date.UTC(2024, 6, 1, 12, 30, 45, 678)),
  ]);
  await run(conn, 'prepared_select', `SELECT id, name, qty, note FROM ${t} WHERE id >= ? AND name <> ? ORDER BY id`, [2, 'gamma']);
  await run(conn, 'prepared_select_null', `SELECT id, name FROM ${t} WHERE qty <=> ? ORDER BY id`, [null]);
  await run(conn, 'prepared_select_unicode', `SELECT id, note, CHAR_LENGTH(note), LENGTH(note), HEX(note) FROM ${t} WHERE note = ?`, [UNICODE_TEXT]);
  await run(conn, 'prepared_select_blob', `SELECT id, data, HEX(data) FROM ${t} WHERE data = ?`, [SMALL_BLOB]);
  await run(conn, 'select_bigblob', `SELECT id, LENGTH(data), SHA2(data, 256), data FROM ${t} WHERE name = ?`, ['prep-bigblob']);
  await run(conn, 'select_typed', `SELECT price, created6, CAST(created6 AS CHAR), price * 2, DATE_FORMAT(created, '%Y/%m/%d') FROM ${t} WHERE name = ?`, ['prep-types']);
  await call('unprepare', async () => conn.unprepare(`SELECT id, name FROM ${t} WHERE qty <=> ? ORDER BY id`));
  await run(conn, 'prepared_select_null_again', `SELECT id, name FROM ${t} WHERE qty <=> ? ORDER BY id`, [null]);

  // transaction rolled back: the row is gone
  await call('txn_rollback_begin', () => conn.beginTransaction());
  await run(conn, 'txn_rollback_insert', `INSERT INTO ${t} (name, qty) VALUES (?, ?)`, ['txn-rollback', 1]);
  await run(conn, 'txn_rollback_visible_inside', `SELECT COUNT(*) FROM ${t} WHERE name = ?`, ['txn-rollback']);
  await call('txn_rollback', () => conn.rollback());
  await run(conn, 'txn_rollback_gone', `SELECT COUNT(*) FROM ${t} WHERE name = ?`, ['txn-rollback']);
  // transaction committed: the row is there
  await call('txn_commit_begin', () => conn.beginTransaction());
  await run(conn, 'txn_commit_insert', `INSERT INTO ${t} (name, qty) VALUES (?, ?)`, ['txn-commit', 2]);
  await call('txn_commit', () => conn.commit());
  await run(conn, 'txn_commit_there', `SELECT id, name, qty FROM ${t} WHERE name = ?`, ['txn-commit']);

  // errors must not break the session
  await run(conn, 'error_syntax', 'SELEC 1');
  await run(conn, 'after_syntax_error', 'SELECT 1 AS ok');
  await run(conn, 'error_syntax_text', 'SELEC 2', [], true);
  await run(conn, 'after_syntax_error_text', 'SELECT 2 AS ok', [], true);
  await run(conn, 'error_duplicate', `INSERT INTO ${t} (name) VALUES (?)`, ['alpha']);
  await run(conn, 'after_duplicate', `SELECT COUNT(*) AS n FROM ${t}`);
  await run(conn, 'error_unknown_column', `SELECT no_such_column FROM ${t}`);
  await run(conn, 'after_unknown_column', 'SELECT ? AS ok', [3]);

  await run(conn, 'select_final', `SELECT ${cols} FROM ${t} ORDER BY id`);
  emit({ step: 'done' });
  await conn.end();
}

main().catch((e) => {
  process.stderr.write(`scenario failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
