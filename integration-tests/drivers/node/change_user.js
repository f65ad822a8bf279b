#!/usr/bin/env node
// COM_CHANGE_USER through mysql2's changeUser(): the session goes on as
// another user, reset as COM_RESET_CONNECTION resets it; a refused change
// leaves the session as it was.
//
// Usage: node change_user.js HOST PORT USER PASSWORD DATABASE
//   The users to change to come from env SG_CHANGE_USERS, a JSON list of
//   {user, password} (the first must be able to log in); SG_CHANGE_READER,
//   {user, password, other}, a read-only user restricted to DATABASE and
//   a database it may not use.
//
// Prints one JSON object per step.
'use strict';

const mysql = require('mysql2/promise');

function emit(rec) {
  process.stdout.write(JSON.stringify(rec) + '\n');
}

async function attempt(step, action) {
  try {
    const value = await action();
    emit({ step, ok: value === undefined ? true : value });
  } catch (e) {
    emit({ step, errno: e.errno, sqlState: e.sqlState, message: e.sqlMessage || e.message });
  }
}

async function main() {
  const [host, port, user, password, database] = process.argv.slice(2);
  const others = JSON.parse(process.env.SG_CHANGE_USERS || '[]');
  const conn = await mysql.createConnection({
    host,
    port: Number(port),
    user,
    password,
    database,
    connectTimeout: 10000,
  });
  const scalar = async (sql) => {
    const [rows] = await conn.query({ sql, rowsAsArray: true });
    return rows[0][0];
  };
  await conn.query('DROP TABLE IF EXISTS it_node_change');
  await conn.query('CREATE TABLE it_node_change (id INT PRIMARY KEY)');
  await conn.query('SET @kept = 42');
  await conn.query('BEGIN');
  await conn.query('INSERT INTO it_node_change VALUES (1)');
  await attempt('before', () => scalar('SELECT @kept'));

  const [first, ...rest] = others;
  await attempt('change', () => conn.changeUser({ user: first.user, password: first.password, database }));
  await attempt('variable_after', () => scalar('SELECT @kept'));
  await attempt('uncommitted_after', () => scalar('SELECT COUNT(*) FROM it_node_change'));
  await conn.query('SET @kept = 7');
  await attempt('wrong_password', () =>
    conn.changeUser({ user: first.user, password: 'wrong', database }),
  );
  await attempt('after_refusal', () => scalar('SELECT @kept'));
  await attempt('unknown_database', () =>
    conn.changeUser({ user: first.user, password: first.password, database: 'no_such_db' }),
  );
  for (const other of rest) {
    await attempt(`change_to_${other.user}`, () =>
      conn.changeUser({ user: other.user, password: other.password, database }),
    );
    await attempt(`select_as_${other.user}`, () => scalar('SELECT 1'));
  }
  const reader = JSON.parse(process.env.SG_CHANGE_READER || 'null');
  if (reader) {
    await attempt('reader_other_database', () =>
      conn.changeUser({ user: reader.user, password: reader.password, database: reader.other }),
    );
    await attempt('reader', () =>
      conn.changeUser({ user: reader.user, password: reader.password, database }),
    );
    await attempt('reader_writes', () => conn.query('INSERT INTO it_node_change VALUES (2)'));
    await attempt('reader_reads', () => scalar('SELECT COUNT(*) FROM it_node_change'));
    await conn.changeUser({ user: first.user, password: first.password, database });
  }
  await conn.query('DROP TABLE IF EXISTS it_node_change');
  await conn.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
