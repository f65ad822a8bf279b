#!/usr/bin/env python3
"""ShardGate driver scenario: PyMySQL (text protocol, client-side parameter interpolation).

Usage: scenario.py HOST PORT USER PASSWORD DATABASE
   (or env SG_HOST, SG_PORT, SG_USER, SG_PASSWORD, SG_DATABASE)

Prints a canonical transcript, one JSON object per line, on stdout. Running it
against ds0 directly and through ShardGate must give identical output, so it
prints nothing that differs by design (database name, connection id, server
version, timings).
"""
import datetime
import decimal
import hashlib
import json
import os
import sys

import pymysql
import pymysql.err

TABLE = "it_pymysql"

SMALL_BLOB = bytes([0x00, 0xFF, 0x01, 0x7F, 0x80, 0x00, 0x27, 0x5C, 0x22, 0x0A])
BIG_BLOB = bytes((i * 31 + 7) % 256 for i in range(100_000))
UNICODE_TEXT = "🦀 crab 漢字 ünïcödé 'quoted' \\ backslash"
DECIMAL_VALUE = decimal.Decimal("12345678901234.123456")
DATETIME_VALUE = datetime.datetime(2024, 2, 29, 23, 59, 59)
DATETIME6_VALUE = datetime.datetime(2024, 2, 29, 23, 59, 59, 654321)

# PyMySQL drops the SQLSTATE of an ERR packet; capture it on the way through.
_last_sqlstate = [None]
_orig_raise = pymysql.err.raise_mysql_exception


def _raise_with_sqlstate(data):
    _last_sqlstate[0] = data[4:9].decode("ascii", "replace") if data[3:4] == b"#" else None
    return _orig_raise(data)


pymysql.err.raise_mysql_exception = _raise_with_sqlstate


def render(v):
    """Canonical rendering of a value as decoded by the driver."""
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray)):
        v = bytes(v)
        if len(v) <= 64:
            return "hex:" + v.hex()
        return "bytes:len=%d,sha256=%s" % (len(v), hashlib.sha256(v).hexdigest())
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return "float:" + repr(v)
    if isinstance(v, decimal.Decimal):
        return "decimal:" + str(v)
    if isinstance(v, datetime.datetime):
        return "datetime:" + v.isoformat(sep=" ")
    if isinstance(v, datetime.date):
        return "date:" + v.isoformat()
    if isinstance(v, datetime.timedelta):
        return "time:" + str(v)
    if isinstance(v, str):
        return v
    return "%s:%s" % (type(v).__name__, v)


def emit(rec):
    sys.stdout.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Scenario:
    def __init__(self, conn):
        self.conn = conn

    def run(self, step, sql, params=None, many=False):
        rec = {"step": step}
        cur = self.conn.cursor()
        try:
            if many:
                cur.executemany(sql, params)
            else:
                cur.execute(sql, params)
            rec["affected"] = cur.rowcount
            rec["insert_id"] = cur.lastrowid
            result = getattr(cur, "_result", None)
            if result is not None and not cur.description:
                rec["warnings"] = result.warning_count
                info = result.message
                rec["info"] = info.decode("utf-8", "replace") if isinstance(info, (bytes, bytearray)) else info
            if cur.description:
                rec["columns"] = [list(d) for d in cur.description]
                rec["rows"] = [[render(v) for v in row] for row in cur.fetchall()]
        except pymysql.MySQLError as e:
            code = e.args[0] if e.args else None
            msg = e.args[1] if len(e.args) > 1 else str(e)
            rec["error"] = {
                "class": type(e).__name__,
                "code": code,
                "sqlstate": _last_sqlstate[0],
                "message": msg,
            }
        finally:
            cur.close()
        emit(rec)
        return rec

    def call(self, step, fn):
        rec = {"step": step}
        try:
            fn()
            rec["ok"] = True
        except pymysql.MySQLError as e:
            rec["error"] = {"class": type(e).__name__, "code": e.args[0], "sqlstate": _last_sqlstate[0]}
        emit(rec)


def main():
    args = sys.argv[1:]
    host = args[0] if len(args) > 0 else os.environ.get("SG_HOST", "127.0.0.1")
    port = int(args[1] if len(args) > 1 else os.environ.get("SG_PORT", "13306"))
    user = args[2] if len(args) > 2 else os.environ.get("SG_USER", "root")
    password = args[3] if len(args) > 3 else os.environ.get("SG_PASSWORD", "")
    database = args[4] if len(args) > 4 else os.environ.get("SG_DATABASE", "ds0")

    # SG_TLS_CA: connect over TLS, verifying the server's certificate and name.
    ca = os.environ.get("SG_TLS_CA")
    tls = {"ssl_ca": ca, "ssl_verify_cert": True, "ssl_verify_identity": True} if ca else {}
    conn = pymysql.connect(
        **tls,
        host=host,
        port=port,
        user=user,
        password=password,
        database=database,
        charset="utf8mb4",
        autocommit=True,
        binary_prefix=True,
        connect_timeout=10,
        read_timeout=60,
        write_timeout=60,
    )
    s = Scenario(conn)
    t = TABLE
    cols = "id, name, qty, price, ratio, day, created, created6, data, note"

    with conn.cursor() as cur:  # not in the transcript: leftovers of an earlier run
        cur.execute("DROP TABLE IF EXISTS %s" % t)
    s.run("drop_table", "DROP TABLE IF EXISTS %s" % t)
    s.run(
        "create_table",
        "CREATE TABLE %s ("
        " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
        " name VARCHAR(64) NOT NULL,"
        " qty INT NULL,"
        " price DECIMAL(20,6) NULL,"
        " ratio DOUBLE NULL,"
        " day DATE NULL,"
        " created DATETIME NULL,"
        " created6 DATETIME(6) NULL,"
        " data MEDIUMBLOB NULL,"
        " note TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,"
        " UNIQUE KEY uk_name (name)"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % t,
    )
    s.call("ping", lambda: conn.ping(reconnect=False))
    s.call("init_db", lambda: conn.select_db(database))
    s.run(
        "insert_literal",
        "INSERT INTO %s (name, qty, price, ratio, day, created, created6, data, note) VALUES "
        "('alpha', 1, 12.5, 0.25, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05.123456',"
        " X'00FF01', 'plain ascii')" % t,
    )
    s.run(
        "insert_multi",
        "INSERT INTO %s (name, qty, price, ratio) VALUES ('beta', 2, -0.000001, -1.5), ('gamma', 3, 0, 1e100)" % t,
    )
    s.run("select_all", "SELECT %s FROM %s ORDER BY id" % (cols, t))
    s.run("update", "UPDATE %s SET qty = qty + 10 WHERE id <= 2" % t)
    s.run("update_nochange", "UPDATE %s SET qty = qty WHERE id = 1" % t)

    ins = "INSERT INTO %s (name, qty, price, ratio, day, created, created6, data, note) VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s)" % t
    s.run(
        "prepared_insert_types",
        ins,
        ("prep-types", 42, DECIMAL_VALUE, 3.25, datetime.date(2024, 12, 31), DATETIME_VALUE, DATETIME6_VALUE, SMALL_BLOB, UNICODE_TEXT),
    )
    s.run("prepared_insert_nulls", ins, ("prep-nulls", None, None, None, None, None, None, None, None))
    s.run("prepared_insert_bigblob", ins, ("prep-bigblob", 7, decimal.Decimal("-99999999999999.999999"), 0.5, None, None, None, BIG_BLOB, "big"))
    s.run(
        "prepared_insert_many",
        "INSERT INTO %s (name, qty, note) VALUES (%%s, %%s, %%s)" % t,
        [("many-1", 1, "漢字"), ("many-2", None, "🦀🦀"), ("many-3", 3, None)],
        many=True,
    )
    s.run("prepared_select", "SELECT id, name, qty, note FROM %s WHERE id >= %%s AND name <> %%s ORDER BY id" % t, (2, "gamma"))
    s.run("prepared_select_null", "SELECT id, name FROM %s WHERE qty <=> %%s ORDER BY id" % t, (None,))
    s.run("prepared_select_unicode", "SELECT id, note, CHAR_LENGTH(note), LENGTH(note), HEX(note) FROM %s WHERE note = %%s" % t, (UNICODE_TEXT,))
    s.run("prepared_select_blob", "SELECT id, data, HEX(data) FROM %s WHERE data = %%s" % t, (SMALL_BLOB,))
    s.run("select_bigblob", "SELECT id, LENGTH(data), SHA2(data, 256), data FROM %s WHERE name = 'prep-bigblob'" % t)
    s.run("select_typed", "SELECT price, created6, CAST(created6 AS CHAR), price * 2, DATE_FORMAT(created, '%%%%Y/%%%%m/%%%%d') FROM %s WHERE name = %%s" % t, ("prep-types",))

    # transaction rolled back: the row is gone
    s.call("txn_rollback_begin", conn.begin)
    s.run("txn_rollback_insert", "INSERT INTO %s (name, qty) VALUES (%%s, %%s)" % t, ("txn-rollback", 1))
    s.run("txn_rollback_visible_inside", "SELECT COUNT(*) FROM %s WHERE name = 'txn-rollback'" % t)
    s.call("txn_rollback", conn.rollback)
    s.run("txn_rollback_gone", "SELECT COUNT(*) FROM %s WHERE name = 'txn-rollback'" % t)
    # transaction committed: the row is there
    s.call("txn_commit_begin", conn.begin)
    s.run("txn_commit_insert", "INSERT INTO %s (name, qty) VALUES (%%s, %%s)" % t, ("txn-commit", 2))
    s.call("txn_commit", conn.commit)
    s.run("txn_commit_there", "SELECT id, name, qty FROM %s WHERE name = 'txn-commit'" % t)

    # errors must not break the session
    s.run("error_syntax", "SELEC 1")
    s.run("after_syntax_error", "SELECT 1 AS ok")
    s.run("error_duplicate", "INSERT INTO %s (name) VALUES (%%s)" % t, ("alpha",))
    s.run("after_duplicate", "SELECT COUNT(*) AS n FROM %s" % t)
    s.run("error_unknown_column", "SELECT no_such_column FROM %s" % t)
    s.run("after_unknown_column", "SELECT 2 AS ok")

    s.run("select_final", "SELECT %s FROM %s ORDER BY id" % (cols, t))
    emit({"step": "done"})
    conn.close()


if __name__ == "__main__":
    main()
