#!/usr/bin/env python3
"""The PyMySQL column of the transaction matrix (tests/e2e/transactions.rs).

Usage: txn_matrix.py HOST PORT USER PASSWORD DATABASE, with TXN_CELLS naming
a JSON file the test wrote: the cells to run and the servers to wait for.

Every cell runs on a new connection opened with autocommit=False (PyMySQL
then sends `SET AUTOCOMMIT = 0` itself, when the handshake says autocommit
is on), ends the transaction with the driver's commit() / rollback() /
autocommit(True), and reads the touched rows back in the same session with
autocommit on. "other" chunks run on a second connection (autocommit on).

Prints one JSON object per statement or driver call on stdout: rows (sorted
unless the statement has a total ORDER BY), rowcount, lastrowid, the server
status flags the client saw (IN_TRANS, AUTOCOMMIT, MORE_RESULTS,
IN_TRANS_READONLY) and the error number. Running it through ShardGate and
against the reference database must print the same.
"""
import datetime
import decimal
import json
import os
import sys

import pymysql
from pymysql.constants import CLIENT

STATUS_MASK = 0x0001 | 0x0002 | 0x0008 | 0x2000


def value(v):
    if v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + bytes(v).hex()
    if isinstance(v, (decimal.Decimal, datetime.datetime, datetime.date, float)):
        return f"{type(v).__name__}:{v}"
    return repr(v)


def rows_of(cur, ordered):
    if cur.description is None:
        return None
    rows = [json.dumps([value(v) for v in r], ensure_ascii=False) for r in cur.fetchall()]
    return rows if ordered else sorted(rows)


def emit(cell, what, conn, **fields):
    line = {"cell": cell, "what": what, "status": conn.server_status & STATUS_MASK}
    line.update(fields)
    print(json.dumps(line, ensure_ascii=False), flush=True)


def result(cur, ordered):
    return {
        "rows": rows_of(cur, ordered),
        "rowcount": cur.rowcount,
        "lastrowid": cur.lastrowid,
    }


def run_statements(cell, conn, steps, multi):
    """Single: one execute per statement, going on after errors (as a
    client would). Multi: one string; an error ends it, as on one server."""
    cur = conn.cursor()
    if not multi:
        for step in steps:
            try:
                cur.execute(step["sql"])
                emit(cell, step["sql"], conn, **result(cur, step["ordered"]))
            except pymysql.err.MySQLError as e:
                emit(cell, step["sql"], conn, error=e.args[0])
        return
    sql = ";\n".join(s["sql"] for s in steps)
    i = 0
    try:
        cur.execute(sql)
        while True:
            emit(cell, steps[i]["sql"], conn, **result(cur, steps[i]["ordered"]))
            i += 1
            if not cur.nextset():
                break
    except pymysql.err.MySQLError as e:
        what = steps[i]["sql"] if i < len(steps) else sql
        emit(cell, what, conn, error=e.args[0])
    if i < len(steps):
        emit(cell, "(multi-statement string ended)", conn, ran=i)


_barrier_conns = {}


def _direct(port):
    conn = _barrier_conns.get(port)
    if conn is None:
        conn = pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True)
        _barrier_conns[port] = conn
    return conn


def barrier(servers):
    """Every replica has applied what its primary committed so far (another
    session's writes: replicas may lag behind them, by contract)."""
    for primary, replicas in servers:
        with _direct(primary).cursor() as c:
            c.execute("SELECT @@gtid_binlog_pos")
            pos = c.fetchone()[0]
        for port in replicas:
            with _direct(port).cursor() as c:
                c.execute("SELECT MASTER_GTID_WAIT(%s, 30)", (pos,))
                if c.fetchone()[0] != 0:
                    sys.exit(f"replica {port} did not reach {pos}")


def main():
    host, port, user, password, database = sys.argv[1:6]
    spec = json.load(open(os.environ["TXN_CELLS"], encoding="utf-8"))

    def connect(autocommit, multi):
        return pymysql.connect(
            host=host,
            port=int(port),
            user=user,
            password=password,
            database=database,
            charset="utf8mb4",
            autocommit=autocommit,
            client_flag=CLIENT.MULTI_STATEMENTS if multi else 0,
        )

    other = connect(True, False)
    with other.cursor() as c:
        c.execute("SET SESSION innodb_lock_wait_timeout = 5")
    cells = 0
    for cell in spec["cells"]:
        name = cell["name"]
        conn = connect(False, cell["multi"])
        emit(name, "connect(autocommit=False)", conn, autocommit=conn.get_autocommit())
        with conn.cursor() as c:
            c.execute("SET SESSION innodb_lock_wait_timeout = 5")
        for chunk in cell["chunks"]:
            kind = chunk["kind"]
            if kind == "session":
                run_statements(name, conn, chunk["steps"], cell["multi"])
            elif kind == "other":
                run_statements(name, other, chunk["steps"], False)
                if chunk["writes"]:
                    barrier(spec["barrier"])
            elif kind == "commit":
                conn.commit()
                emit(name, "commit()", conn)
            elif kind == "rollback":
                conn.rollback()
                emit(name, "rollback()", conn)
            elif kind == "autocommit_on":
                conn.autocommit(True)
                emit(name, "autocommit(True)", conn)
            else:
                sys.exit(f"unknown chunk kind {kind}")
        conn.close()
        cells += 1
    other.close()
    print(json.dumps({"done": cells}), flush=True)


if __name__ == "__main__":
    main()
