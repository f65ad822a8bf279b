#!/usr/bin/env node
// ShardGate application scenario: a small wallet service on a mysql2 pool
// with mysql2's defaults but for BIGINTs read as strings (ShardGate's
// snowflake keys are past 2^53; see main): connectionLimit 10, DECIMAL as strings, DATETIME as
// Date in the process's zone, which is UTC here). pool.getConnection(),
// beginTransaction(), query() (text protocol, parameters spliced in by
// mysql2) and execute() (prepared statements), commit() / rollback(),
// release(); concurrent transactions on different connections; pool.query /
// pool.execute reads after writes of another connection (a `finding` line:
// reported, not compared). Every read that checks what the app wrote runs
// on the pool (as the app reads) and then in a transaction (ShardGate
// serves it from the primaries): the transaction's result is compared, the
// steps whose pool read differed are listed in a finding at the end (with
// read_consistency = "session" a replica may serve another connection's read
// before it has applied the write). One step uses a
// second pool with supportBigNumbers + bigNumberStrings, and says so.
//
// Usage: node app.js HOST PORT USER PASSWORD DATABASE
//   env SG_APP_BASE (explicit ids [BASE, BASE + 99999]) and SG_APP_PREFIX
//   (tenant prefix): the scenario's own rows.
//
// Transcript: one JSON object per line; rows in ORDER BY order; a
// users.user_id outside the explicit range (a generated key) prints as
// gen#N, N by first appearance, the insert ids reported by the driver
// labelled first (see src/apps.rs).
'use strict';

process.env.TZ = 'UTC';
const mysql = require('mysql2/promise');

const BASE = Number(process.env.SG_APP_BASE || 9300000000);
const TOP = BASE + 99999;
const PREFIX = process.env.SG_APP_PREFIX || 'app-node';
const tenant = (t) => `${PREFIX}-${t}`;
const ACME = tenant('acme');
const BETA = tenant('beta');

const labels = new Map();
/**
 * A users.user_id as the transcript shows it. A JS number beyond 2^53 is not
 * the key itself but the nearest double: it prints as the label of the key
 * it came from (a labelled key string of that double value), marked
 * "(rounded)".
 */
function key(v) {
  if (v === null || v === undefined) return v;
  const n = Number(v);
  if (n === 0 || (n >= BASE && n <= TOP)) return typeof v === 'string' ? n : v;
  if (typeof v === 'number' && !Number.isSafeInteger(v)) {
    for (const [k, label] of labels) {
      if (Number(k) === v && String(v) !== k) return `gen#${label} (rounded)`;
    }
  }
  const k = String(v);
  if (!labels.has(k)) labels.set(k, labels.size + 1);
  return `gen#${labels.get(k)}`;
}

function render(column, v) {
  if (v === null || v === undefined) return null;
  if (column === 'user_id') return key(v);
  if (v instanceof Date) return 'date:' + v.toISOString();
  if (Buffer.isBuffer(v)) return 'hex:' + v.toString('hex');
  if (typeof v === 'number') return 'num:' + v;
  if (typeof v === 'bigint') return 'bigint:' + v;
  return v;
}

function rowsOf(rows) {
  return rows.map((row) => Object.entries(row).map(([c, v]) => render(c, v)));
}

function emit(rec) {
  process.stdout.write(JSON.stringify(rec) + '\n');
}

function errorOf(e) {
  if (e.errno === undefined) throw e; // not a server error: the scenario stops
  return { code: e.errno, sqlstate: e.sqlState };
}

/** A step: its record, or the server error it met. */
async function step(name, body) {
  const rec = { step: name };
  try {
    await body(rec);
  } catch (e) {
    if (e instanceof AppError) rec.app_error = e.message;
    else rec.error = errorOf(e);
  }
  emit(rec);
}

class AppError extends Error {}

/** A measurement the test reports but does not compare (timing-dependent). */
async function finding(name, body) {
  const rec = { finding: name };
  try {
    await body(rec);
  } catch (e) {
    rec.error = errorOf(e);
  }
  emit(rec);
}

const USER_COLUMNS = 'user_id, tenant_id, name, email, balance, created_at, status';

/** WalletService.transfer on a connection in a transaction. */
async function transfer(conn, from, to, amount, failAfterDebit = false) {
  const [[a]] = await conn.execute('SELECT balance FROM users WHERE user_id = ? FOR UPDATE', [from]);
  const [[b]] = await conn.execute('SELECT balance FROM users WHERE user_id = ? FOR UPDATE', [to]);
  if (!a || !b) throw new AppError('no such account');
  if (Number(a.balance) < amount) throw new AppError('insufficient funds');
  const [debit] = await conn.execute('UPDATE users SET balance = balance - ? WHERE user_id = ?', [amount, from]);
  if (failAfterDebit) throw new AppError('simulated failure after the debit');
  const [credit] = await conn.execute('UPDATE users SET balance = balance + ? WHERE user_id = ?', [amount, to]);
  if (debit.affectedRows + credit.affectedRows !== 2) throw new AppError('accounts changed');
  const [audit] = await conn.execute(
    'INSERT INTO apps_audit (actor, action, detail, amount) VALUES (?, ?, ?, ?)',
    ['wallet', 'transfer', `${from} -> ${to}`, amount.toFixed(4)],
  );
  return audit.insertId;
}

/** A transaction on a connection of its own: commit, or rollback and rethrow. */
async function inTransaction(pool, work) {
  const conn = await pool.getConnection();
  try {
    await conn.beginTransaction();
    try {
      const result = await work(conn);
      await conn.commit();
      return result;
    } catch (e) {
      await conn.rollback();
      throw e;
    }
  } finally {
    conn.release();
  }
}

/**
 * A check of what the app wrote: `read(db)` on the pool first, as the app
 * reads (pool.query / pool.execute), then in a transaction (which ShardGate
 * serves from the primaries). The transaction's result is the step; a pool
 * read that differs is remembered for the finding at the end.
 */
const verification = { reads: 0, missed: [] };
async function verify(pool, name, read) {
  const rec = { step: name };
  const labelsBefore = new Map(labels);
  let natural;
  try {
    natural = JSON.stringify(await read(pool));
  } catch (e) {
    natural = JSON.stringify({ error: errorOf(e) });
  }
  // the pool read is only compared: its key labels are not kept
  labels.clear();
  for (const [k, v] of labelsBefore) labels.set(k, v);
  let fresh;
  try {
    fresh = await inTransaction(pool, (conn) => read(conn));
  } catch (e) {
    fresh = { error: errorOf(e) };
  }
  verification.reads++;
  if (natural !== JSON.stringify(fresh)) verification.missed.push(name);
  emit(Object.assign(rec, fresh));
}

async function balances(pool, ids) {
  const out = [];
  for (const id of ids) {
    const [rows] = await pool.execute('SELECT user_id, balance FROM users WHERE user_id = ?', [id]);
    out.push(rows.length ? rowsOf(rows)[0] : [key(id), 'missing']);
  }
  return out;
}

async function main() {
  const a = process.argv.slice(2);
  const settings = {
    host: a[0] || '127.0.0.1',
    port: Number(a[1] || 13306),
    user: a[2] || 'root',
    password: a.length > 3 ? a[3] : '',
    database: a[4] || 'apps_ref',
  };
  // ShardGate's generated keys are snowflake ids (~3.9e17), past 2^53: a
  // JavaScript application reads BIGINTs as strings (as with any such key),
  // else mysql2 rounds them and the app updates rows that do not exist.
  // Everything else stays mysql2's default.
  const pool = mysql.createPool({ ...settings, supportBigNumbers: true, bigNumberStrings: true });

  // ------------------------------------------------ sign-ups (generated keys)
  const generated = [];
  const people = [[ACME, 'Ada 🦀', 'ada@example.com'], [ACME, 'Grace', null], [BETA, 'Линус', 'linus@example.com']];
  for (const [i, [t, name, email]] of people.entries()) {
    await step(`signup_${i}`, async (rec) => {
      const [res] = await pool.execute(
        'INSERT INTO users (tenant_id, name, email, balance, created_at, status) VALUES (?, ?, ?, ?, ?, ?)',
        [t, name, email, '50.00', new Date(Date.UTC(2024, i, 15, 9, 30, 0)), 1],
      );
      generated.push(res.insertId);
      rec.affected = res.affectedRows;
      rec.insert_id = key(res.insertId);
    });
  }
  // the profile page: the user by the key the driver reported
  for (const [i, id] of generated.entries()) {
    await verify(pool, `profile_execute_${i}`, async (db) => ({
      rows: rowsOf((await db.execute(`SELECT ${USER_COLUMNS} FROM users WHERE user_id = ?`, [id]))[0]),
    }));
    await verify(pool, `profile_query_${i}`, async (db) => ({
      rows: rowsOf((await db.query(`SELECT ${USER_COLUMNS} FROM users WHERE user_id = ?`, [id]))[0]),
    }));
  }

  // ------------------------------- an import in one transaction, every shard
  await step('import', async (rec) => {
    rec.result = await inTransaction(pool, async (conn) => {
      const values = [];
      for (let i = 0; i < 8; i++) {
        values.push([BASE + i, i % 2 === 0 ? ACME : BETA, `imported ${i} 漢字`, i % 3 === 0 ? null : `imp${i}@example.com`,
          (100 + i).toFixed(4), new Date(Date.UTC(2024, i, 1)), 1]);
      }
      // query(): mysql2 expands the nested array into (..), (..)
      const [res] = await conn.query(`INSERT INTO users (${USER_COLUMNS}) VALUES ?`, [values]);
      const [[inside]] = await conn.execute('SELECT COUNT(*) AS n FROM users WHERE user_id BETWEEN ? AND ?', [BASE, TOP]);
      return { affected: res.affectedRows, inside: inside.n };
    });
  });
  const listAcme = `SELECT ${USER_COLUMNS} FROM users WHERE tenant_id = ? ORDER BY user_id`;
  await verify(pool, 'list_acme', async (db) => ({ rows: rowsOf((await db.query(listAcme, [ACME]))[0]) }));
  const [listed] = await pool.query(listAcme, [ACME]);
  // the edit page: a user picked from the list, changed by the user_id the list gave
  const picked = listed.filter((r) => r.user_id > TOP);
  for (const [i, row] of picked.entries()) {
    await step(`rename_listed_user_${i}`, async (rec) => {
      rec.user_id_type = typeof row.user_id;
      const [res] = await pool.execute('UPDATE users SET name = ? WHERE user_id = ?', [`${row.name} (renamed)`, row.user_id]);
      rec.affected_execute = res.affectedRows;
      const [res2] = await pool.query('UPDATE users SET email = ? WHERE user_id = ?', [`renamed${i}@example.com`, row.user_id]);
      rec.affected_query = res2.affectedRows;
    });
  }

  // --------------------------------------------------------- transfers
  await step('transfer', async (rec) => {
    rec.audit_id = await inTransaction(pool, (conn) => transfer(conn, BASE, BASE + 1, 30.5));
  });
  await step('transfer_insufficient', async (rec) => {
    rec.audit_id = await inTransaction(pool, (conn) => transfer(conn, BASE + 1, BASE, 1000000));
  });
  await step('transfer_failing', async (rec) => {
    rec.audit_id = await inTransaction(pool, (conn) => transfer(conn, BASE + 2, BASE + 3, 10, true));
  });
  await verify(pool, 'balances_after_transfers', async (db) => ({ rows: await balances(db, [BASE, BASE + 1, BASE + 2, BASE + 3]) }));

  // two transactions at once, on two connections
  await step('concurrent_transfers', async (rec) => {
    const results = await Promise.allSettled([
      inTransaction(pool, (conn) => transfer(conn, BASE + 2, BASE + 3, 5.25)),
      inTransaction(pool, (conn) => transfer(conn, BASE + 4, BASE + 5, 7.75)),
    ]);
    rec.outcomes = results.map((r) => (r.status === 'fulfilled' ? 'committed' : r.reason.errno !== undefined ? errorOf(r.reason) : `failed: ${r.reason.message}`));
  });
  // the pool's next read runs on one of the two connections
  await verify(pool, 'balances_after_concurrent', async (db) => ({ rows: await balances(db, [BASE + 2, BASE + 3, BASE + 4, BASE + 5]) }));

  // a row locked by one transaction; another asks with NOWAIT
  await step('lock_conflict_nowait', async (rec) => {
    const holder = await pool.getConnection();
    const other = await pool.getConnection();
    try {
      await holder.beginTransaction();
      const [locked] = await holder.execute('SELECT user_id, balance FROM users WHERE user_id = ? FOR UPDATE', [BASE + 4]);
      rec.locked = rowsOf(locked);
      await other.beginTransaction();
      try {
        await other.query('SELECT user_id FROM users WHERE user_id = ? FOR UPDATE NOWAIT', [BASE + 4]);
        rec.other = 'got the lock';
      } catch (e) {
        rec.other = errorOf(e);
      }
      await other.rollback();
      const [res] = await holder.execute('UPDATE users SET name = ? WHERE user_id = ?', ['locked and renamed', BASE + 4]);
      rec.affected = res.affectedRows;
      await holder.commit();
    } finally {
      holder.release();
      other.release();
    }
  });

  // ------------------------------------------------------------- messages
  await step('post_messages', async (rec) => {
    rec.affected = await inTransaction(pool, async (conn) => {
      const msgs = [[ACME, '2024-01-31 23:59:59'], [ACME, '2024-02-01 00:00:00'], [BETA, '2024-02-14 12:00:00'],
        [ACME, '2024-06-30 08:00:00'], [BETA, '2024-12-31 23:59:59'], [ACME, '2024-12-01 00:00:00']];
      const counts = [];
      for (const [i, [t, at]] of msgs.entries()) {
        const [res] = await conn.execute(
          'INSERT INTO message_records (id, tenant_id, created_at, sender, body) VALUES (?, ?, ?, ?, ?)',
          [BASE + i, t, at, i === 3 ? null : BASE + (i % 3), `message ${i}: 你好 🦀`],
        );
        counts.push(res.affectedRows);
      }
      return counts;
    });
  });
  await verify(pool, 'history', async (db) => ({
    rows: rowsOf((await db.execute(
      'SELECT id, created_at, sender, body FROM message_records WHERE tenant_id = ? AND created_at >= ? AND created_at < ? ORDER BY created_at, id',
      [ACME, new Date(Date.UTC(2024, 0, 1)), new Date(Date.UTC(2024, 6, 1))],
    ))[0]),
  }));
  await verify(pool, 'messages_per_month', async (db) => ({
    rows: rowsOf((await db.query(
      "SELECT DATE_FORMAT(created_at, '%Y-%m') AS month, COUNT(*) AS n FROM message_records WHERE tenant_id = ? GROUP BY month ORDER BY month",
      [ACME],
    ))[0]),
  }));

  // ------------------------- reads on the pool right after another connection wrote
  // Not compared (a `finding` line, reported by the test): with
  // read_consistency = "session" a read on another connection may be served
  // by a replica that has not applied the write yet; a single database never
  // shows that. The read is not delayed to hide it.
  await finding('reads_after_writes_of_another_connection', async (rec) => {
    const writer = await pool.getConnection();
    const stale = [];
    const rounds = 30;
    try {
      for (let i = 0; i < rounds; i++) {
        const status = 10 + i;
        if (i % 2 === 0) {
          await writer.execute('UPDATE users SET status = ? WHERE user_id = ?', [status, BASE + 6]);
        } else {
          await writer.beginTransaction();
          await writer.query('UPDATE users SET status = ? WHERE user_id = ?', [status, BASE + 6]);
          await writer.commit();
        }
        // the writer is still held: the pool serves this read on another connection
        const [rows] = await (i % 2 === 0 ? pool.query : pool.execute).call(pool, 'SELECT status FROM users WHERE user_id = ?', [BASE + 6]);
        if (!rows.length || rows[0].status !== status) stale.push(i);
      }
    } finally {
      writer.release();
    }
    rec.rounds = rounds;
    // rounds whose read did not see the write just made (even: autocommit
    // execute(), then pool.query; odd: a transaction with query(), then pool.execute)
    rec.stale_rounds = stale;
  });

  // ------------------------------------------- updates: affected-row counts
  for (const name of ['deactivate_beta', 'deactivate_beta_again']) {
    await step(name, async (rec) => {
      const [res] = await pool.execute('UPDATE users SET status = ? WHERE tenant_id = ?', [0, BETA]);
      rec.affected = res.affectedRows;
      rec.changed = res.changedRows;
    });
  }

  // a duplicate key inside a transaction: rolled back
  await step('duplicate_in_transaction', async (rec) => {
    await inTransaction(pool, async (conn) => {
      const [res] = await conn.execute('INSERT INTO users (user_id, tenant_id, name, status) VALUES (?, ?, ?, ?)', [BASE + 20, ACME, 'dup test', 1]);
      rec.first = res.affectedRows;
      await conn.execute('INSERT INTO users (user_id, tenant_id, name, status) VALUES (?, ?, ?, ?)', [BASE, ACME, 'dup test', 1]);
    });
  });
  await verify(pool, 'duplicate_rolled_back', async (db) => ({
    rows: rowsOf((await db.execute('SELECT user_id FROM users WHERE user_id = ?', [BASE + 20]))[0]),
  }));

  // ------------------------------------------------ dictionary (broadcast)
  const dictType = `${PREFIX}-currency`;
  await step('dictionary_save', async (rec) => {
    const [res] = await pool.query('INSERT INTO sys_dictionaries (dict_type, dict_key, label, sort_order) VALUES ?', [[
      [dictType, 'EUR', 'Euro €', 0], [dictType, 'JPY', '円', 1], [dictType, 'USD', 'US dollar', 2]]]);
    rec.affected = res.affectedRows;
  });
  await verify(pool, 'dictionary', async (db) => ({
    rows: rowsOf((await db.execute('SELECT dict_key, label FROM sys_dictionaries WHERE dict_type = ? ORDER BY sort_order', [dictType]))[0]),
  }));

  // ------------------------- the same sign-up with big-number settings (says so)
  await step('signup_with_big_number_strings', async (rec) => {
    const big = mysql.createPool({ ...settings, supportBigNumbers: true, bigNumberStrings: true });
    try {
      const [res] = await big.execute('INSERT INTO users (tenant_id, name, status) VALUES (?, ?, ?)', [BETA, 'big numbers', 1]);
      rec.insert_id = key(res.insertId);
      const [rows] = await big.execute('SELECT user_id, name FROM users WHERE user_id = ?', [res.insertId]);
      rec.rows = rowsOf(rows);
    } finally {
      await big.end();
    }
  });

  // --------------------------------------------------- delete, then totals
  await step('delete_user', async (rec) => {
    const [res] = await pool.execute('DELETE FROM users WHERE user_id = ?', [BASE + 7]);
    rec.affected = res.affectedRows;
  });
  await verify(pool, 'totals', async (db) => ({
    rows: rowsOf((await db.query(
      'SELECT tenant_id, COUNT(*) AS n, SUM(balance) AS total, MAX(created_at) AS latest FROM users WHERE tenant_id LIKE ? GROUP BY tenant_id ORDER BY tenant_id',
      [`${PREFIX}%`],
    ))[0]),
  }));
  await verify(pool, 'audit', async (db) => {
    const [rows] = await db.query('SELECT id, actor, action, detail, amount FROM apps_audit ORDER BY id');
    // the ids of the two concurrent transfers depend on which came first
    return {
      ids: rows.map((r) => r.id),
      rows: rowsOf(rows.map(({ id, ...rest }) => rest)).map((r) => JSON.stringify(r)).sort().map((r) => JSON.parse(r)),
    };
  });
  await verify(pool, 'final_users', async (db) => ({
    rows: rowsOf((await db.query(`SELECT ${USER_COLUMNS} FROM users WHERE tenant_id LIKE ? ORDER BY user_id`, [`${PREFIX}%`]))[0]),
  }));
  await verify(pool, 'final_messages', async (db) => ({
    rows: rowsOf((await db.query('SELECT id, tenant_id, created_at, sender, body FROM message_records WHERE tenant_id LIKE ? ORDER BY id', [`${PREFIX}%`]))[0]),
  }));
  emit({ finding: 'pool_reads_that_missed_the_apps_own_writes', reads: verification.reads, missed: verification.missed });
  await pool.end();
  emit({ step: 'done' });
}

main().catch((e) => {
  process.stderr.write(`app.js failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
