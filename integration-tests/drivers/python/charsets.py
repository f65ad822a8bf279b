"""Client character sets, run the same way straight at MariaDB and through
ShardGate (the Rust test compares the transcripts): statements in latin1,
gbk and utf8mb4, binary data inside text statements (PyMySQL's
_binary'...' literals with raw bytes), multi-row INSERTs split over data
nodes, and reads by value. Every value is read back as HEX, so a changed
byte shows.

Usage: charsets.py HOST PORT USER PASSWORD DATABASE
"""

import json
import sys

import pymysql

host, port, user, password, database = sys.argv[1:6]

TABLE = "it_orders"
CASES = [
    ("latin1", ["été", "Ñandú ¿qué?", "naïve"]),
    ("gbk", ["中文", "乗\\", "运'行"]),
    ("utf8mb4", ["日本", "😀", "it's"]),
]


def connect(charset):
    return pymysql.connect(
        host=host,
        port=int(port),
        user=user,
        password=password,
        database=database,
        charset=charset,
        autocommit=True,
    )


def say(step, value):
    print(json.dumps({"step": step, "value": value}, ensure_ascii=False, sort_keys=True))


setup = connect("utf8mb4")
with setup.cursor() as cur:
    cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
    cur.execute(
        f"CREATE TABLE {TABLE} (order_id BIGINT PRIMARY KEY, "
        "name VARCHAR(100) CHARACTER SET utf8mb4, note VARCHAR(100) CHARACTER SET latin1, "
        "data BLOB)"
    )
setup.close()

next_id = 1
for charset, words in CASES:
    conn = connect(charset)
    with conn.cursor() as cur:
        rows = []
        for word in words:
            note = word if charset == "latin1" else "x"
            encoding = "utf8" if charset == "utf8mb4" else charset
            data = bytes([0, 0xFF, 0x5C, 0x27, 0xBF]) + word.encode(encoding)
            rows.append((next_id, word, note, data))
            next_id += 1
        # One statement, rows on several data nodes (order_id % 4).
        cur.executemany(
            f"INSERT INTO {TABLE} (order_id, name, note, data) VALUES (%s, %s, %s, %s)", rows
        )
        say(f"{charset} inserted", cur.rowcount)
        cur.execute(
            f"SELECT order_id, HEX(name), HEX(note), HEX(data) FROM {TABLE} "
            "WHERE order_id BETWEEN %s AND %s ORDER BY order_id",
            (rows[0][0], rows[-1][0]),
        )
        say(f"{charset} stored", [list(r) for r in cur.fetchall()])
        for word in words:
            cur.execute(f"SELECT order_id, name FROM {TABLE} WHERE name = %s ORDER BY order_id", (word,))
            say(f"{charset} find {word}", [list(r) for r in cur.fetchall()])
        first = rows[0][0]
        cur.execute(f"SELECT name, data FROM {TABLE} WHERE order_id = %s", (first,))
        name, data = cur.fetchone()
        say(f"{charset} point read", [name, data.hex()])
        cur.execute(
            f"UPDATE {TABLE} SET name = CONCAT(name, %s) WHERE order_id IN %s",
            (words[0], [r[0] for r in rows]),
        )
        say(f"{charset} updated", cur.rowcount)
        cur.execute(f"SELECT HEX(name) FROM {TABLE} WHERE order_id IN %s ORDER BY order_id", ([r[0] for r in rows],))
        say(f"{charset} after update", [r[0] for r in cur.fetchall()])
    conn.close()

done = connect("utf8mb4")
with done.cursor() as cur:
    cur.execute(f"SELECT COUNT(*), SUM(LENGTH(data)) FROM {TABLE}")
    say("totals", [str(v) for v in cur.fetchone()])
    cur.execute(f"DROP TABLE {TABLE}")
done.close()
say("done", True)
