#!/usr/bin/env node
// ShardGate sharded-SQL driver scenario: node mysql2 with execute() (binary
// protocol: COM_STMT_PREPARE / COM_STMT_EXECUTE) over the seed's sharded
// tables (users, message_records) and broadcast tables, every statement with
// bound parameters. Parameters are sent in the shapes applications send them:
// JS numbers (mysql2 binds them as DOUBLE unless the server's parameter
// definitions say integer), BigInt and decimal strings (VAR_STRING), Date
// (DATETIME) and explicitly typed ones (mysql2's TypedParameter, LONGLONG).
//
// Usage: node sharded.js HOST PORT USER PASSWORD DATABASE
//   (or env SG_HOST, SG_PORT, SG_USER, SG_PASSWORD, SG_DATABASE)
//   SG_REFERENCE_KEY_STANDIN=1: the run is against the plain reference, whose
//   users.user_id the scenario makes AUTO_INCREMENT (the stand-in for
//   ShardGate's key generator) for its generated-key INSERTs only. Every
//   other step reads a reference whose user_id is declared as ShardGate's
//   physical ones, so column flags derived from it (NO_DEFAULT_VALUE, also
//   on MIN(user_id) of a grouped result) compare as they are.
//
// It expects the differential harness's seed data (integration-tests/src/sharding.rs)
// and writes only rows with user_id / message id in [BASE, BASE + 99999] and
// users rows with tenant_id 'node-gen' (generated keys). It prints a canonical
// transcript, one JSON object per line, which must be identical against the
// plain reference database (wework_ref) and through ShardGate (wework): every
// printed row order comes from an ORDER BY, the rows of unordered statements
// are printed sorted, generated key values are never printed (the
// reference's AUTO_INCREMENT and ShardGate's snowflake differ), nor the
// database name or connection ids.
'use strict';

process.env.TZ = 'UTC';
const mysql = require('mysql2/promise');
const T = require('mysql2').TypedParameter;

const BASE = 9_100_000_000n;
const TOP = BASE + 99_999n;
const TENANT = 'node-w';
const GEN_TENANT = 'node-gen';
const KEY_STANDIN = process.env.SG_REFERENCE_KEY_STANDIN === '1';
const NAMES = ['node 漢字', 'node 🦀 crab', "O'Brien", 'back\\slash', '', 'Zoë', '한국어', 'plain'];

function render(v) {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v)) return 'hex:' + v.toString('hex');
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

let DATABASE = '';

function describeFields(fields) {
  return fields.map((f) => ({
    // the database connected to (wework_ref or wework) prints as <db>
    schema: f.schema === DATABASE ? '<db>' : f.schema,
    name: f.name,
    orgName: f.orgName,
    table: f.table,
    orgTable: f.orgTable,
    type: f.columnType,
    length: f.columnLength,
    decimals: f.decimals,
    charset: f.characterSet,
    flags: f.flags,
  }));
}

function errorOf(e) {
  if (e.errno === undefined) throw e; // not a server error: a driver/proxy failure
  // as the differential harness: the error number (and SQLSTATE), not the
  // message, to which ShardGate adds the data source of a multi-node failure
  return { code: e.errno, sqlstate: e.sqlState, name: e.code };
}

/**
 * One prepared statement (`text`: a text-protocol query, mysql2 binding the
 * parameters); `sorted`: rows printed sorted (no total ORDER BY). Returns the result.
 */
async function run(conn, step, sql, params, sorted = false, text = false) {
  const rec = { step, sql };
  let result = null;
  try {
    const [res, fields] = text ? await conn.query(sql, params) : await conn.execute(sql, params);
    result = res;
    if (Array.isArray(res)) {
      rec.columns = describeFields(fields || []);
      const rows = res.map((row) => JSON.stringify(row.map(render)));
      if (sorted) rows.sort();
      rec.rows = rows.map((r) => JSON.parse(r));
    } else {
      rec.affected = res.affectedRows;
      rec.changed = res.changedRows;
      rec.warnings = res.warningStatus;
      rec.info = res.info;
    }
  } catch (e) {
    rec.error = errorOf(e);
  }
  emit(rec);
  return result;
}

async function call(step, fn) {
  const rec = { step };
  try {
    await fn();
    rec.ok = true;
  } catch (e) {
    rec.error = errorOf(e);
  }
  emit(rec);
}

function placeholders(rows, cols) {
  const one = '(' + Array(cols).fill('?').join(', ') + ')';
  return Array(rows).fill(one).join(', ');
}

const USER_COLUMNS = 'user_id, tenant_id, name, email, balance, created_at, status';

/** The parameters of row i of this scenario's users (7 columns), in varied parameter shapes. */
function userParams(id, i) {
  const key = [T.BIGINT(id), id, id.toString()][i % 3]; // LONGLONG, BigInt (string), string
  return [
    key,
    TENANT,
    `${NAMES[i % NAMES.length]} ${i}`,
    i % 3 === 0 ? null : `u${i}@example.com`,
    i % 4 === 1 ? null : `${i % 2 === 0 ? '-' : ''}${i * 1234}.5678`,
    i % 5 === 2 ? null : new Date(Date.UTC(2024, i % 12, 1, 0, 0, 0)),
    i % 3,
  ];
}

function ids(result) {
  return (result || []).map((row) => BigInt(row[0]));
}

async function main() {
  const a = process.argv.slice(2);
  const env = process.env;
  const cfg = {
    host: a[0] || env.SG_HOST || '127.0.0.1',
    port: Number(a[1] || env.SG_PORT || 13306),
    user: a[2] || env.SG_USER || 'root',
    password: a.length > 3 ? a[3] : env.SG_PASSWORD || '',
    database: a[4] || env.SG_DATABASE || 'wework_ref',
    charset: 'UTF8MB4_UNICODE_CI',
    timezone: 'Z',
    dateStrings: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    rowsAsArray: true,
    connectTimeout: 10000,
  };
  DATABASE = cfg.database;
  const conn = await mysql.createConnection(cfg);

  // leftovers of an earlier run; not in the transcript
  await conn.execute('DELETE FROM users WHERE user_id BETWEEN ? AND ?', [T.BIGINT(BASE), T.BIGINT(TOP)]);
  await conn.execute('DELETE FROM message_records WHERE id BETWEEN ? AND ?', [T.BIGINT(BASE), T.BIGINT(TOP)]);
  await conn.execute('DELETE FROM users WHERE tenant_id = ?', [GEN_TENANT]);

  // ------------------------------------------------------------ point reads
  const picked = ids(await run(conn, 'pick_ids', 'SELECT user_id FROM users ORDER BY user_id LIMIT ?, ?', [T.INT(200), T.INT(12)]));
  if (picked.length < 12) throw new Error(`the seed data is not loaded: ${picked.length} ids`);
  const big = 1_700_000_000_000_000_000n + 499n * 1_000_003n;
  const num = (x) => Number(x); // a JS number: bound as DOUBLE

  await run(conn, 'point_user_double_param', 'SELECT * FROM users WHERE user_id = ?', [num(picked[0])]);
  await run(conn, 'point_user_longlong_param', 'SELECT * FROM users WHERE user_id = ?', [T.BIGINT(picked[1])]);
  await run(conn, 'point_user_string_param', 'SELECT user_id, name FROM users WHERE user_id = ?', [picked[2].toString()]);
  await run(conn, 'point_user_big_id', 'SELECT * FROM users WHERE user_id = ?', [T.BIGINT(big)]);
  await run(conn, 'point_user_big_id_bigint', 'SELECT user_id, tenant_id FROM users WHERE user_id = ?', [big]);
  await run(conn, 'point_user_missing', 'SELECT * FROM users WHERE user_id = ?', [999999999]);
  await run(conn, 'point_user_null', 'SELECT * FROM users WHERE user_id = ?', [null]);
  await run(conn, 'point_user_alias', 'SELECT u.user_id, u.name, u.balance FROM users AS u WHERE u.user_id = ? AND u.status >= ?', [num(picked[3]), 0]);
  await run(conn, 'in_two', 'SELECT user_id, name, email FROM users WHERE user_id IN (?, ?) ORDER BY user_id', [num(picked[4]), T.BIGINT(picked[9])]);
  await run(conn, 'in_many', 'SELECT * FROM users WHERE user_id IN (?, ?, ?, ?, ?) ORDER BY user_id DESC', picked.slice(5, 10).map((x) => T.BIGINT(x)));
  await run(conn, 'or_keys', 'SELECT user_id, tenant_id FROM users WHERE user_id = ? OR user_id = ? ORDER BY user_id', [num(picked[6]), T.BIGINT(big)]);
  await run(conn, 'between_keys', 'SELECT * FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id', [num(picked[0]), num(picked[7])]);
  await run(conn, 'between_wide', 'SELECT user_id, balance, created_at FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id', [T.BIGINT(2000), T.BIGINT(3500)]);
  await run(conn, 'range_open', 'SELECT user_id, status FROM users WHERE user_id > ? AND status = ?', [100000, 2], true);
  await run(conn, 'messages_tenant_month_dates', 'SELECT * FROM message_records WHERE tenant_id = ? AND created_at BETWEEN ? AND ? ORDER BY created_at, id', [
    't4',
    new Date(Date.UTC(2024, 3, 1, 0, 0, 0)),
    new Date(Date.UTC(2024, 3, 30, 23, 59, 59)),
  ]);
  await run(conn, 'messages_tenant_boundary', 'SELECT id, tenant_id, created_at FROM message_records WHERE tenant_id = ? AND created_at >= ? AND created_at < ? ORDER BY id', [
    't6',
    '2024-02-29 23:59:59',
    '2024-03-01 00:00:01',
  ]);
  await run(conn, 'messages_tenant_typed_dates', 'SELECT id, created_at, sender FROM message_records WHERE tenant_id = ? AND created_at >= ? AND created_at <= ? ORDER BY created_at DESC, id', [
    't8',
    T.DATETIME('2024-06-15 00:00:00'),
    T.DATETIME('2024-08-15 00:00:00'),
  ]);
  await run(conn, 'messages_tenants_in', 'SELECT id, tenant_id, created_at FROM message_records WHERE tenant_id IN (?, ?) AND created_at >= ? ORDER BY created_at, id', [
    't1',
    't2',
    new Date(Date.UTC(2024, 11, 1, 0, 0, 0)),
  ]);
  await run(conn, 'messages_tenant_only', 'SELECT id, created_at FROM message_records WHERE tenant_id = ? ORDER BY created_at, id', ['t10']);
  await run(conn, 'messages_created_at_only', 'SELECT id, tenant_id FROM message_records WHERE created_at = ? ORDER BY id', ['2024-12-31 23:59:59']);

  // ---------------------------------------------------------- scatter reads
  await run(conn, 'order_limit_offset', 'SELECT * FROM users ORDER BY user_id LIMIT ?, ?', [T.BIGINT(1490), T.BIGINT(20)]);
  // JS numbers as LIMIT parameters: mysql2 binds them as DOUBLE, which MariaDB accepts
  await run(conn, 'order_limit_double_params', 'SELECT user_id FROM users ORDER BY user_id LIMIT ?, ?', [300, 5]);
  await run(conn, 'limit_double_param_one_node', 'SELECT user_id FROM users WHERE user_id = ? LIMIT ?', [T.BIGINT(picked[0]), 1]);
  await run(conn, 'order_desc_limit_offset', 'SELECT user_id, name FROM users ORDER BY user_id DESC LIMIT ? OFFSET ?', [T.INT(9), T.INT(3)]);
  await run(conn, 'order_literal_limit', 'SELECT user_id, name, balance FROM users WHERE status = ? ORDER BY balance, user_id DESC LIMIT 12', [0]);
  await run(conn, 'order_by_name', 'SELECT user_id, name FROM users WHERE tenant_id = ? ORDER BY name DESC, user_id', ['t12']);
  await run(conn, 'order_nulls_first', 'SELECT user_id, email FROM users WHERE status <> ? ORDER BY email, user_id LIMIT ?', [2, T.INT(25)]);
  await run(conn, 'order_hidden_columns', 'SELECT tenant_id FROM users WHERE status = ? ORDER BY balance DESC, user_id LIMIT ?', [1, T.INT(15)]);
  await run(conn, 'order_messages', 'SELECT id, tenant_id, created_at FROM message_records WHERE sender < ? ORDER BY created_at, id LIMIT ?, ?', [50000, T.INT(20), T.INT(10)]);
  await run(conn, 'scatter_unordered', 'SELECT user_id, tenant_id, balance FROM users WHERE status = ? AND balance < ?', [2, '-40000'], true);
  await run(conn, 'group_by_aggregates', 'SELECT tenant_id, COUNT(*), COUNT(created_at), SUM(balance), AVG(balance), MIN(name), MAX(created_at) FROM users WHERE status <> ? GROUP BY tenant_id ORDER BY tenant_id', [0]);
  await run(conn, 'having_count', 'SELECT tenant_id, COUNT(*) AS n FROM users GROUP BY tenant_id HAVING COUNT(*) < ? ORDER BY tenant_id', [T.BIGINT(75)]);
  await run(conn, 'having_sum_decimal_string', 'SELECT status, SUM(balance) AS s, AVG(balance) AS a FROM users GROUP BY status HAVING SUM(balance) > ? ORDER BY status', ['-1000000.5']);
  await run(conn, 'having_avg_double', 'SELECT tenant_id, AVG(balance) AS a, MIN(user_id), MAX(user_id) FROM users GROUP BY tenant_id HAVING a > ? ORDER BY tenant_id', [40000.25]);
  await run(conn, 'order_by_aggregate_limit', 'SELECT tenant_id, SUM(balance) AS s FROM users GROUP BY tenant_id ORDER BY s, tenant_id LIMIT ?', [T.INT(4)]);
  await run(conn, 'group_by_unordered', 'SELECT status, COUNT(*), MIN(balance) FROM users WHERE user_id > ? GROUP BY status', [0], true);
  await run(conn, 'aggregates_no_group', 'SELECT COUNT(*), SUM(balance), AVG(balance), MIN(user_id), MAX(user_id), COUNT(email), MAX(name), MIN(created_at) FROM users WHERE status = ?', [1]);
  await run(conn, 'aggregates_empty', 'SELECT COUNT(*), SUM(balance), AVG(balance), MAX(name) FROM users WHERE status = ?', [99]);
  await run(conn, 'messages_group_by_month', "SELECT DATE_FORMAT(created_at, '%Y-%m') AS ym, COUNT(*), COUNT(sender), MIN(id), MAX(id) FROM message_records WHERE created_at < ? GROUP BY ym ORDER BY ym", [
    new Date(Date.UTC(2024, 6, 1, 0, 0, 0)),
  ]);
  await run(conn, 'distinct_ordered', 'SELECT DISTINCT tenant_id FROM users WHERE status = ? ORDER BY tenant_id DESC', [0]);
  await run(conn, 'distinct_unordered', 'SELECT DISTINCT status, tenant_id FROM users WHERE tenant_id IN (?, ?, ?)', ['t3', 't4', 't39'], true);
  // the text protocol's column definitions are those of a text query
  await run(conn, 'group_by_aggregates_text', 'SELECT tenant_id, COUNT(*), SUM(balance), MIN(name), MIN(user_id) FROM users WHERE status <> ? GROUP BY tenant_id ORDER BY tenant_id', [0], false, true);
  await run(conn, 'distinct_text', 'SELECT DISTINCT status, tenant_id FROM users WHERE tenant_id IN (?, ?) ORDER BY tenant_id, status', ['t3', 't5'], false, true);
  await run(conn, 'count_distinct', 'SELECT COUNT(DISTINCT tenant_id) FROM message_records WHERE created_at > ?', ['2024-10-01 00:00:00']);
  await run(conn, 'count_distinct_group', 'SELECT status, COUNT(DISTINCT tenant_id) FROM users WHERE email IS NOT NULL AND status >= ? GROUP BY status ORDER BY status', [0]);
  await run(conn, 'broadcast_count', 'SELECT COUNT(*), SUM(id) FROM sys_permissions WHERE id > ?', [3]);
  await run(conn, 'broadcast_configs', 'SELECT k, v FROM sys_configs WHERE k LIKE ? ORDER BY k', ['%.%']);
  await run(conn, 'broadcast_unordered', 'SELECT id, name FROM sys_permissions WHERE id BETWEEN ? AND ?', [5, 9], true);
  await run(conn, 'join_broadcast', 'SELECT u.user_id, p.name FROM users u JOIN sys_permissions p ON p.id = u.status + 1 WHERE u.user_id IN (?, ?, ?) ORDER BY u.user_id', [
    num(picked[0]),
    T.BIGINT(picked[1]),
    picked[2].toString(),
  ]);

  // ----------------------------------------------------------------- writes
  const n = 8; // BASE + 0..7: every database, several tables
  const insertUsers = `INSERT INTO users (${USER_COLUMNS}) VALUES ${placeholders(n, 7)}`;
  const range = [T.BIGINT(BASE), T.BIGINT(TOP)];
  await run(conn, 'insert_multi_row', insertUsers, [...Array(n).keys()].flatMap((i) => userParams(BASE + BigInt(i), i)));
  await run(conn, 'insert_multi_row_read_back', 'SELECT * FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id', range);
  // a duplicate in a multi-row INSERT across nodes: the statement fails as a whole
  await run(conn, 'insert_multi_row_duplicate', `INSERT INTO users (${USER_COLUMNS}) VALUES ${placeholders(3, 7)}`, [
    ...userParams(BASE + 8n, 8),
    ...userParams(BASE + 9n, 9),
    ...userParams(BASE + 3n, 3),
  ]);
  await run(conn, 'after_duplicate', 'SELECT user_id FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id', range);
  const msgParams = [];
  for (let i = 0; i < 6; i++) {
    msgParams.push(
      T.BIGINT(BASE + BigInt(i)),
      i % 2 === 0 ? 'node-a' : 'node-b',
      i < 2 ? '2024-11-30 23:59:59' : new Date(Date.UTC(2024, 2 * i - 1, 1, 0, 0, 0)),
      i === 3 ? null : Number(BASE) + i,
      `node message 漢字 🦀 #${i}`,
    );
  }
  await run(conn, 'insert_messages', `INSERT INTO message_records (id, tenant_id, created_at, sender, body) VALUES ${placeholders(6, 5)}`, msgParams);
  await run(conn, 'messages_read_back', 'SELECT * FROM message_records WHERE id BETWEEN ? AND ? ORDER BY id', range);
  await run(conn, 'messages_read_back_by_tenant', 'SELECT id, created_at FROM message_records WHERE tenant_id = ? AND created_at BETWEEN ? AND ? ORDER BY id', [
    'node-a',
    '2024-01-01 00:00:00',
    new Date(Date.UTC(2024, 11, 31, 23, 59, 59)),
  ]);
  for (let i = 10; i < 14; i++) {
    await run(conn, `insert_single_${i}`, `INSERT INTO users (${USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`, userParams(BASE + BigInt(i), i));
  }
  await run(conn, 'insert_single_read_back', 'SELECT user_id, name, status FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id', [
    T.BIGINT(BASE + 10n),
    T.BIGINT(BASE + 19n),
  ]);

  // generated keys: the value differs by nature (AUTO_INCREMENT vs snowflake); only use it
  const keyStandin = (on) =>
    conn.query(`ALTER TABLE users MODIFY user_id BIGINT NOT NULL${on ? ' AUTO_INCREMENT' : ''}`);
  if (KEY_STANDIN) await keyStandin(true); // not in the transcript
  const gen = [];
  for (const [step, sql, params] of [
    ['insert_generated_key', 'INSERT INTO users (tenant_id, name, balance, status) VALUES (?, ?, ?, ?)', [GEN_TENANT, 'generated 🦀', '12.3400', 1]],
    [
      'insert_generated_keys_multi_row',
      'INSERT INTO users (tenant_id, name, status) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)',
      [GEN_TENANT, 'generated row 0', 0, GEN_TENANT, 'generated row 1', 1, GEN_TENANT, 'generated row 2', 2],
    ],
  ]) {
    const rec = { step, sql };
    try {
      const [res] = await conn.execute(sql, params);
      rec.affected = res.affectedRows;
      rec.insert_id_non_zero = String(res.insertId) !== '0';
      gen.push(BigInt(res.insertId));
    } catch (e) {
      rec.error = errorOf(e);
      gen.push(0n);
    }
    emit(rec);
  }
  if (KEY_STANDIN) await keyStandin(false);
  await run(conn, 'generated_key_read_back', 'SELECT tenant_id, name, balance, status FROM users WHERE user_id = ?', [T.BIGINT(gen[0])]);
  // the insert id of a multi-row INSERT is the first row's (as MySQL does)
  await run(conn, 'generated_first_key_read_back', 'SELECT tenant_id, name, status FROM users WHERE user_id = ?', [gen[1].toString()]);
  await run(conn, 'generated_rows', 'SELECT name, status FROM users WHERE tenant_id = ? ORDER BY name', [GEN_TENANT]);

  // UPDATE / DELETE by key
  await run(conn, 'update_by_key', 'UPDATE users SET balance = balance + ?, name = ? WHERE user_id = ?', ['1.5', '更新 🦀', T.BIGINT(BASE)]);
  await run(conn, 'update_by_keys_in', 'UPDATE users SET status = ? WHERE user_id IN (?, ?, ?)', [5, Number(BASE) + 1, T.BIGINT(BASE + 2n), (BASE + 3n).toString()]);
  await run(conn, 'update_by_key_no_change', 'UPDATE users SET status = status WHERE user_id = ?', [T.BIGINT(BASE + 4n)]);
  await run(conn, 'update_by_key_missing', 'UPDATE users SET status = ? WHERE user_id = ?', [1, T.BIGINT(TOP)]);
  await run(conn, 'delete_by_key', 'DELETE FROM users WHERE user_id = ?', [Number(BASE) + 5]);
  await run(conn, 'after_by_key', 'SELECT user_id, name, balance, status FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id', range);
  // UPDATE / DELETE without key, within this scenario's rows
  await run(conn, 'update_without_key', 'UPDATE users SET status = ? WHERE tenant_id = ? AND status <> ?', [7, TENANT, 5]);
  await run(conn, 'update_key_range', 'UPDATE users SET email = NULL WHERE user_id BETWEEN ? AND ? AND email IS NOT NULL', [
    T.BIGINT(BASE + 10n),
    T.BIGINT(BASE + 19n),
  ]);
  await run(conn, 'update_messages_without_key', 'UPDATE message_records SET body = CONCAT(body, ?) WHERE id BETWEEN ? AND ?', [' ✓', ...range]);
  await run(conn, 'delete_without_key', 'DELETE FROM users WHERE tenant_id = ? AND balance IS NULL', [TENANT]);
  await run(conn, 'delete_messages_without_key', 'DELETE FROM message_records WHERE id BETWEEN ? AND ? AND created_at > ?', [
    ...range,
    new Date(Date.UTC(2024, 9, 1, 0, 0, 0)),
  ]);
  await run(conn, 'after_without_key', 'SELECT user_id, email, status FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id', range);
  await run(conn, 'messages_after_without_key', 'SELECT id, body FROM message_records WHERE id BETWEEN ? AND ? ORDER BY id', range);

  // ----------------------------------------------------------- transactions
  // BASE + 20 / + 21 / + 22 / + 23 are on four different databases
  const insertTwo = `INSERT INTO users (${USER_COLUMNS}) VALUES ${placeholders(2, 7)}`;
  await call('txn_rollback_begin', () => conn.beginTransaction());
  await run(conn, 'txn_rollback_insert', insertTwo, [...userParams(BASE + 20n, 20), ...userParams(BASE + 21n, 21)]);
  await run(conn, 'txn_rollback_update', 'UPDATE users SET name = ? WHERE user_id IN (?, ?)', ['rolled back', T.BIGINT(BASE + 6n), T.BIGINT(BASE + 7n)]);
  await run(conn, 'txn_rollback_inside', 'SELECT user_id, name FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id', range);
  // inside a transaction the merge keeps one connection per data source
  await run(conn, 'txn_rollback_inside_group_by', 'SELECT status, COUNT(*), MIN(user_id), MAX(name) FROM users WHERE user_id BETWEEN ? AND ? GROUP BY status ORDER BY status', range);
  await run(conn, 'txn_rollback_inside_point', 'SELECT user_id, name FROM users WHERE user_id = ?', [T.BIGINT(BASE + 21n)]);
  await call('txn_rollback', () => conn.rollback());
  await run(conn, 'txn_rollback_after', 'SELECT user_id, name FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id', range);
  await call('txn_commit_begin', () => conn.query('SET autocommit = 0'));
  await run(conn, 'txn_commit_insert', insertTwo, [...userParams(BASE + 22n, 22), ...userParams(BASE + 23n, 23)]);
  await run(conn, 'txn_commit_update', 'UPDATE users SET name = ? WHERE user_id = ?', ['committed', T.BIGINT(BASE + 7n)]);
  await run(conn, 'txn_commit_delete', 'DELETE FROM users WHERE user_id = ?', [T.BIGINT(BASE + 6n)]);
  await run(conn, 'txn_commit_inside_distinct', 'SELECT DISTINCT tenant_id, status FROM users WHERE user_id BETWEEN ? AND ? ORDER BY tenant_id, status', range);
  await run(conn, 'txn_commit_inside', 'SELECT user_id, name FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id', range);
  await call('txn_commit', async () => {
    await conn.commit();
    await conn.query('SET autocommit = 1');
  });

  await run(conn, 'final_users', 'SELECT * FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id', range);
  await run(conn, 'final_messages', 'SELECT * FROM message_records WHERE id BETWEEN ? AND ? ORDER BY id', range);
  // the generated rows go (their keys differ by nature); the id range stays for the caller's checks
  await run(conn, 'delete_generated', 'DELETE FROM users WHERE tenant_id = ?', [GEN_TENANT]);
  emit({ step: 'done' });
  await conn.end();
}

main().catch((e) => {
  process.stderr.write(`scenario failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
