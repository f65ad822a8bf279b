#!/usr/bin/env python3
"""A Django program over ShardGate's sharded tables, run as a script.

    python run.py HOST PORT USER PASSWORD DATABASE [main|flush]

tests/e2e/peer_django.rs runs it twice, against one plain MariaDB database and
through ShardGate (logical database `wework` of examples/wework.toml), and
compares the transcripts. The database must be empty of the program's
tables: the program runs Django's `migrate` first (django_migrations,
django_content_type, sgapp_tenant, and the sharded `users` and
`message_records`, see sgapp/models.py), then works through Django's ORM on
the MySQL backend with Django's default settings (sgsite/settings.py).

`flush` (run after `main`, once the caller has checked where the rows
are) runs Django's `flush` command: TRUNCATE of every table.

Output, one JSON object a line on stdout: {"step": NAME, "result": ...} or
{"step": NAME, "error": {"class": ..., "code": ...}}, ending with
{"step": "done"} ({"step": "flush.done"}). A step that fails is recorded
and the program goes on.
Database errors print as the exception's class and MySQL error number only
(ShardGate names the data source in the message of a multi-node failure);
the messages, and the SQL Django sent in each step
(`django.db.connection.queries`, DEBUG=True), go to the detail file named by
SG_DJANGO_DETAIL (JSON lines: step, sql, failed (the statements that
failed), error, ms), when set.

Generated keys: `users.user_id` values the program did not choose itself
(ShardGate's snowflake keys, MariaDB's AUTO_INCREMENT) print as `gen:N`, N
counting distinct generated keys in the order the transcript first shows
them. The program knows the keys it chose (EXPLICIT); any other user_id is a
generated one. Generated rows live in tenant `dj-gen` and are listed by
name, never by key. Explicit keys given after generated rows exist are
below the seed's (101..160), so on MariaDB, where AUTO_INCREMENT continues
after the largest key, every generated key is above every explicit key, as
snowflake keys are.

Rows come back in a defined order: every query that lists rows orders them
by columns that make the order total (or the program sorts them).
"""

import datetime
import decimal
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

if len(sys.argv) not in (6, 7) or sys.argv[6:] not in ([], ["main"], ["flush"]):
    sys.exit("usage: run.py HOST PORT USER PASSWORD DATABASE [main|flush]")
PART = sys.argv[6] if len(sys.argv) == 7 else "main"
for key, value in zip(("HOST", "PORT", "USER", "PASSWORD", "DATABASE"), sys.argv[1:6]):
    os.environ["SG_DJANGO_" + key] = value
os.environ["DJANGO_SETTINGS_MODULE"] = "sgsite.settings"

import django  # noqa: E402

django.setup()

from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import DatabaseError, connection, reset_queries, transaction  # noqa: E402
from django.db.migrations.recorder import MigrationRecorder  # noqa: E402
from django.db.models import Avg, Count, F, Max, Min, Q, Sum  # noqa: E402
from django.db.models.functions import TruncMonth  # noqa: E402

from sgapp.models import MessageRecord, Tenant, User  # noqa: E402

UTC = datetime.timezone.utc
D = decimal.Decimal

# ---------------------------------------------------------------- transcript

# user_id values the program chose
EXPLICIT = set()
# generated user_id -> its label, in order of first appearance
GENERATED = {}


def uid(value):
    """A user_id as the transcript shows it (generated keys as gen:N)."""
    if value is None or value in EXPLICIT:
        return value
    if value not in GENERATED:
        GENERATED[value] = "gen:%d" % (len(GENERATED) + 1)
    return GENERATED[value]


def plain(value):
    """A value as JSON: decimals and datetimes as text."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def user_row(u):
    return {
        "user_id": uid(u.user_id),
        "tenant_id": u.tenant_id,
        "name": u.name,
        "email": u.email,
        "balance": plain(u.balance),
        "created_at": plain(u.created_at),
        "status": u.status,
        "nickname": u.nickname,
    }


def user_dict(d):
    """A values() row of users with its user_id as the transcript shows it."""
    d = dict(d)
    if "user_id" in d:
        d["user_id"] = uid(d["user_id"])
    return plain(d)


def message_row(m):
    return {
        "id": m.id,
        "tenant_id": m.tenant_id,
        "created_at": plain(m.created_at),
        "sender": uid(m.sender),
        "body": m.body,
    }


def error_of(exc):
    """The class and MySQL error number of a database error; the class and
    message of any other exception."""
    err = {"class": type(exc).__name__}
    if isinstance(exc, DatabaseError):
        args = (exc.__cause__ or exc).args
        if args and isinstance(args[0], int):
            err["code"] = args[0]
    else:
        err["message"] = str(exc)
    return err


DETAIL_PATH = os.environ.get("SG_DJANGO_DETAIL")
DETAIL = open(DETAIL_PATH, "w", encoding="utf-8") if DETAIL_PATH else None


# The SQL of executions that failed, in order: mysqlclient leaves the text of
# a failed statement unset, so Django logs it as "None" in
# connection.queries; the detail file shows this rendering instead.
FAILED_SQL = []


def record_failures(execute, sql, params, many, context):
    try:
        return execute(sql, params, many, context)
    except Exception:
        try:
            raw = context["cursor"].cursor.cursor  # Django's, the backend's, MySQLdb's
            text = "%d times: %s" % (len(params), sql) if many else raw.mogrify(sql, params)
        except Exception:
            text = "%s -- params %r" % (sql, params)
        FAILED_SQL.append(text)
        raise


connection.execute_wrappers.append(record_failures)


def sql_of_step():
    """The step's SQL as Django logged it, failed statements filled in, and
    the failed statements. Django logs mysqlclient's autocommit(False) as
    BEGIN: the client sends `SET autocommit=0`, and after COMMIT or ROLLBACK
    an unlogged `SET autocommit=1`."""
    failed = list(FAILED_SQL)
    rest = iter(failed)
    out = [q["sql"] if q["sql"] != "None" else next(rest, "None") for q in connection.queries]
    FAILED_SQL.clear()
    return out, failed


def emit(record):
    print(json.dumps(record, ensure_ascii=False), flush=True)


def step(name):
    """Decorator: runs the function now as step `name` and records it."""

    def run(fn):
        reset_queries()
        FAILED_SQL.clear()
        began = time.monotonic()
        record = {"step": name}
        detail = {"step": name}
        try:
            record["result"] = plain(fn())
        except Exception as exc:  # every failure is part of the transcript
            record["error"] = error_of(exc)
            detail["error"] = "%s: %s" % (type(exc).__name__, exc)
            if connection.connection is not None and not connection.in_atomic_block:
                if not connection.is_usable():
                    connection.close()
        if connection.in_atomic_block:
            record["left_in_atomic_block"] = True
        detail["sql"], failed = sql_of_step()
        if failed:
            detail["failed"] = failed
        detail["ms"] = round((time.monotonic() - began) * 1000)
        emit(record)
        if DETAIL:
            DETAIL.write(json.dumps(detail, ensure_ascii=False) + "\n")
            DETAIL.flush()
        return fn

    return run


class Rollback(Exception):
    """Raised inside transaction.atomic() to roll it back."""


# ---------------------------------------------------------------- data

SEED_TENANTS = ["dj-a", "dj-b", "dj-c", "dj-d", "dj-e"]
NAMES = [
    "alice",
    "Bob",
    "ève",
    "Zoë",
    "漢字",
    "日本語",
    "🦀 crab",
    "O'Brien",
    "back\\slash",
    "emoji 😀",
]


def seed_users():
    """60 users, keys 101..160 (spread over all 4 databases and many tables)."""
    rows = []
    for i in range(60):
        user_id = 101 + i
        cents = ((i * 7919) % 200000) - 50000
        rows.append(
            (
                user_id,
                SEED_TENANTS[i % 5],
                "%s %d" % (NAMES[i % len(NAMES)], user_id),
                None if i % 7 == 0 else "u%d@example.com" % user_id,
                None if i % 11 == 0 else D(cents) / 100,
                (
                    None
                    if i % 13 == 0
                    else datetime.datetime(
                        2024, 1 + i % 12, 1 + i % 28, i % 24, (i * 7) % 60, (i * 13) % 60
                    )
                ),
                i % 3,
            )
        )
    return rows


MESSAGE_TENANTS = ["dj-a", "dj-b", "dj-c", "dj-d", "dj-e", "dj-f"]
BOUNDARIES = [
    (1, 1, 0, 0, 0),
    (1, 31, 23, 59, 59),
    (2, 1, 0, 0, 0),
    (2, 29, 23, 59, 59),
    (3, 1, 0, 0, 0),
    (6, 30, 23, 59, 59),
    (7, 1, 0, 0, 0),
    (11, 30, 23, 59, 59),
    (12, 1, 0, 0, 0),
    (12, 31, 23, 59, 59),
]


def message_time(i):
    if i < len(BOUNDARIES):
        month, day, h, m, s = BOUNDARIES[i]
    else:
        month, day, h, m, s = (
            1 + (i * 5) % 12,
            1 + (i * 3) % 28,
            i % 24,
            (i * 11) % 60,
            (i * 17) % 60,
        )
    return datetime.datetime(2024, month, day, h, m, s, tzinfo=UTC)


BODIES = ["hello", "你好，世界", "🦀🦀 rust", 'it\'s "quoted"', "line1\nline2", "tab\there", ""]


def seed_messages():
    return [
        MessageRecord(
            id=i + 1,
            tenant_id=MESSAGE_TENANTS[i % 6],
            created_at=message_time(i),
            sender=None if i % 9 == 0 else 101 + (i * 7) % 60,
            body="%s #%d" % (BODIES[i % len(BODIES)], i + 1),
        )
        for i in range(72)
    ]


SEED = SEED_TENANTS  # tenants of the seed users (not dj-gen)


def seed_qs():
    return User.objects.filter(tenant_id__in=SEED)


def t(month, day, h=0, m=0, s=0):
    return datetime.datetime(2024, month, day, h, m, s, tzinfo=UTC)


# ---------------------------------------------------------------- the program


def main():
    @step("server")
    def _():
        connection.ensure_connection()
        data = connection.mysql_server_data
        return {
            "mariadb": connection.mysql_is_mariadb,
            "version": list(connection.mysql_version[:2]),
            "sql_mode": sorted(connection.sql_mode),
            "storage_engine": data["default_storage_engine"],
            "sql_auto_is_null": bool(data["sql_auto_is_null"]),
            "lower_case_table_names": data["lower_case_table_names"],
            "has_zoneinfo": bool(data["has_zoneinfo_database"]),
            "can_return_columns_from_insert": connection.features.can_return_columns_from_insert,
            "autocommit": connection.get_autocommit(),
        }

    @step("session")
    def _():
        with connection.cursor() as c:
            c.execute(
                "SELECT @@session.tx_isolation, @@character_set_client,"
                " @@character_set_results, @@collation_connection, DATABASE()"
            )
            row = c.fetchone()
        return {
            "isolation": row[0],
            "charset_client": row[1],
            "charset_results": row[2],
            "collation": row[3],
            "database_is_named": row[4] == os.environ["SG_DJANGO_DATABASE"],
        }

    # ------------------------------------------------ migrations

    @step("migrate")
    def _():
        call_command("migrate", verbosity=0, interactive=False)
        return "ok"

    @step("migrate.applied")
    def _():
        return sorted("%s.%s" % k for k in MigrationRecorder(connection).applied_migrations())

    def users_columns():
        with connection.cursor() as c:
            return [f.name for f in connection.introspection.get_table_description(c, "users")]

    @step("migrate.backward")
    def _():
        # 0002 undone: DROP INDEX and ALTER TABLE ... DROP COLUMN on users
        call_command("migrate", "sgapp", "0001", verbosity=0, interactive=False)
        return users_columns()

    @step("migrate.forward")
    def _():
        call_command("migrate", verbosity=0, interactive=False)
        return users_columns()

    @step("migrate.again")
    def _():
        call_command("migrate", verbosity=0, interactive=False)
        return "ok"

    ours = {"django_migrations", "django_content_type", "sgapp_tenant", "users", "message_records"}

    @step("introspection.tables")
    def _():
        return sorted(set(connection.introspection.table_names()) & ours)

    for table in ["users", "message_records", "sgapp_tenant"]:

        @step("introspection.columns." + table)
        def _():
            with connection.cursor() as c:
                return [
                    [
                        f.name,
                        f.type_code,
                        f.internal_size,
                        f.precision,
                        f.scale,
                        f.null_ok,
                        f.default,
                        f.collation,
                        f.extra,
                        f.is_unsigned,
                    ]
                    for f in connection.introspection.get_table_description(c, table)
                ]

        @step("introspection.constraints." + table)
        def _():
            with connection.cursor() as c:
                constraints = connection.introspection.get_constraints(c, table)
            return {
                name: {k: v for k, v in sorted(info.items()) if v not in (None, False, [])}
                for name, info in sorted(constraints.items())
            }

    @step("contenttypes")
    def _():
        return list(
            ContentType.objects.order_by("app_label", "model").values_list("app_label", "model")
        )

    # ------------------------------------------------ data

    @step("tenants.create")
    def _():
        out = []
        for slug, name in [("dj-a", "Alpha"), ("dj-b", "Beta 漢字"), ("dj-c", "Gamma 🦀")]:
            out.append(Tenant.objects.create(slug=slug, name=name).id)
        return out

    @step("tenants.duplicate")
    def _():
        return Tenant.objects.create(slug="dj-a", name="again").id

    @step("tenants.list")
    def _():
        return list(Tenant.objects.order_by("slug").values("id", "slug", "name", "active"))

    @step("users.seed.executemany")
    def _():
        rows = seed_users()
        EXPLICIT.update(r[0] for r in rows)
        with connection.cursor() as c:
            c.executemany(
                "INSERT INTO users (user_id, tenant_id, name, email, balance, created_at,"
                " status, nickname) VALUES (%s, %s, %s, %s, %s, %s, %s, '')",
                rows,
            )
            return c.rowcount

    @step("users.create.explicit")
    def _():
        EXPLICIT.add(90)
        u = User.objects.create(
            user_id=90, tenant_id="dj-a", name="explicit 90", balance=D("90.5"), status=1
        )
        return uid(u.user_id)

    @step("users.create.generated")
    def _():
        out = []
        for i in range(3):
            u = User.objects.create(
                tenant_id="dj-gen", name="generated %d" % i, balance=D(i), created_at=t(5, 5 + i)
            )
            out.append(uid(u.user_id))
        return out

    @step("users.bulk_create.explicit")
    def _():
        keys = [80, 81, 82, 83, 84]
        EXPLICIT.update(keys)
        made = User.objects.bulk_create(
            [
                User(
                    user_id=k,
                    tenant_id=SEED[k % 5],
                    name="bulk %d" % k,
                    email=None,
                    balance=D(k) / 8,
                    status=k % 3,
                )
                for k in keys
            ]
        )
        return [uid(u.user_id) for u in made]

    @step("users.bulk_create.generated")
    def _():
        made = User.objects.bulk_create(
            [User(tenant_id="dj-gen", name="bulk generated %d" % i, status=i % 2) for i in range(5)]
        )
        return [uid(u.user_id) for u in made]

    @step("users.generated.list")
    def _():
        return [
            user_dict(d)
            for d in User.objects.filter(tenant_id="dj-gen")
            .order_by("name")
            .values("user_id", "name", "status")
        ]

    @step("messages.bulk_create")
    def _():
        made = MessageRecord.objects.bulk_create(seed_messages())
        return len(made)

    @step("messages.create")
    def _():
        m = MessageRecord.objects.create(
            id=100, tenant_id="dj-a", created_at=t(4, 15, 12), sender=101, body="created"
        )
        return [m.id, plain(m.created_at)]

    @step("messages.save.new")
    def _():
        # pk given: Django tries UPDATE first, then INSERT
        m = MessageRecord(
            id=101, tenant_id="dj-b", created_at=t(8, 20, 8, 30), sender=102, body="saved"
        )
        m.save()
        return [m.id, plain(m.created_at)]

    @step("messages.save.existing")
    def _():
        m = MessageRecord(
            id=101, tenant_id="dj-b", created_at=t(8, 20, 8, 30), sender=102, body="saved again"
        )
        m.save()
        return MessageRecord.objects.get(pk=(101, t(8, 20, 8, 30))).body

    # ------------------------------------------------ reads: users

    @step("users.get.pk")
    def _():
        return user_row(User.objects.get(pk=105))

    @step("users.get.missing")
    def _():
        return user_row(User.objects.get(pk=999))

    @step("users.get.by_name")
    def _():
        return user_row(User.objects.get(name="🦀 crab 107"))

    @step("users.filter.in")
    def _():
        return [
            user_row(u)
            for u in User.objects.filter(user_id__in=[101, 106, 133, 150, 999]).order_by("user_id")
        ]

    @step("users.filter.tenant")
    def _():
        return [
            user_dict(d)
            for d in User.objects.filter(tenant_id="dj-a")
            .order_by("name", "user_id")
            .values("user_id", "name", "balance")
        ]

    @step("users.filter.range")
    def _():
        return list(
            User.objects.filter(user_id__gte=120, user_id__lt=130)
            .order_by("-user_id")
            .values_list("user_id", flat=True)
        )

    @step("users.count.all")
    def _():
        return User.objects.filter(tenant_id__startswith="dj-").count()

    @step("users.count.tenant")
    def _():
        return seed_qs().filter(tenant_id="dj-b").count()

    @step("users.count.pk")
    def _():
        return User.objects.filter(pk=110).count()

    @step("users.exists")
    def _():
        return [
            User.objects.filter(user_id=101).exists(),
            User.objects.filter(user_id=998).exists(),
            User.objects.filter(tenant_id="dj-c").exists(),
            User.objects.filter(tenant_id="nobody").exists(),
        ]

    @step("users.order.slice")
    def _():
        qs = seed_qs().filter(balance__isnull=False).order_by("-balance", "user_id")[3:8]
        return [user_dict(d) for d in qs.values("user_id", "balance")]

    @step("users.order.slice.nulls")
    def _():
        qs = seed_qs().order_by("created_at", "user_id")[:6]
        return [user_dict(d) for d in qs.values("user_id", "created_at")]

    @step("users.first_last")
    def _():
        qs = seed_qs().order_by("user_id")
        return [uid(qs.first().user_id), uid(qs.last().user_id)]

    @step("users.latest")
    def _():
        return uid(seed_qs().latest("created_at").user_id)

    @step("users.aggregate")
    def _():
        return seed_qs().aggregate(
            n=Count("user_id"),
            n_balance=Count("balance"),
            total=Sum("balance"),
            avg=Avg("balance"),
            top=Max("balance"),
            low=Min("balance"),
            latest=Max("created_at"),
            n_tenants=Count("tenant_id", distinct=True),
        )

    @step("users.aggregate.empty")
    def _():
        return User.objects.filter(tenant_id="nobody").aggregate(
            n=Count("user_id"), total=Sum("balance"), avg=Avg("balance")
        )

    @step("users.group_by.tenant")
    def _():
        qs = (
            seed_qs()
            .values("tenant_id")
            .annotate(
                n=Count("user_id"), total=Sum("balance"), avg=Avg("balance"), top=Max("user_id")
            )
            .order_by("tenant_id")
        )
        return [user_dict(d) for d in qs]

    @step("users.group_by.conditional")
    def _():
        qs = (
            seed_qs()
            .values("tenant_id")
            .annotate(
                n=Count("user_id"),
                n2=Count("user_id", filter=Q(status=2)),
                rich=Sum("balance", filter=Q(balance__gt=500)),
            )
            .order_by("tenant_id")
        )
        return list(qs)

    @step("users.order.nulls_last")
    def _():
        qs = (
            seed_qs()
            .order_by(F("balance").desc(nulls_last=True), "user_id")
            .values_list("user_id", "balance")
        )
        rows = list(qs)
        return rows[:3] + rows[-8:]

    @step("users.group_by.having")
    def _():
        return list(
            seed_qs()
            .values("status")
            .annotate(n=Count("user_id"))
            .filter(n__gt=19)
            .order_by("status")
        )

    @step("users.group_by.order_by_aggregate")
    def _():
        return list(
            seed_qs()
            .values("tenant_id")
            .annotate(total=Sum("balance"))
            .order_by("-total", "tenant_id")[:3]
        )

    @step("users.distinct")
    def _():
        return list(
            User.objects.values_list("tenant_id", flat=True).distinct().order_by("tenant_id")
        )

    @step("users.q_or")
    def _():
        return [
            uid(u.user_id)
            for u in User.objects.filter(
                Q(user_id=101) | Q(user_id=140) | Q(name="Zoë 104")
            ).order_by("user_id")
        ]

    @step("users.exclude")
    def _():
        return list(
            User.objects.filter(tenant_id="dj-c")
            .exclude(status=0)
            .order_by("user_id")
            .values_list("user_id", "status")
        )

    @step("users.raw")
    def _():
        return [
            user_row(u) for u in User.objects.raw("SELECT * FROM users WHERE user_id = %s", [110])
        ]

    @step("users.raw.string_key")
    def _():
        # a key as it comes from a URL: a string parameter, quoted by the driver
        return [
            user_row(u) for u in User.objects.raw("SELECT * FROM users WHERE user_id = %s", ["111"])
        ]

    @step("users.in_bulk")
    def _():
        got = User.objects.in_bulk([101, 102, 103, 997])
        return sorted([k, v.name] for k, v in got.items())

    @step("users.iterator")
    def _():
        return [
            uid(u.user_id)
            for u in seed_qs().filter(status=2).order_by("user_id").iterator(chunk_size=7)
        ]

    @step("users.values_list.unicode")
    def _():
        return list(
            User.objects.filter(
                name__in=[
                    "漢字 105",
                    "🦀 crab 107",
                    "emoji 😀 110",
                    "O'Brien 108",
                    "back\\slash 109",
                ]
            )
            .order_by("user_id")
            .values_list("user_id", "name")
        )

    @step("users.filter.contains")
    def _():
        return list(
            seed_qs()
            .filter(name__icontains="ZOË")
            .order_by("user_id")
            .values_list("user_id", flat=True)
        )

    # ------------------------------------------------ reads: message_records

    @step("messages.tenant")
    def _():
        return [
            message_row(m)
            for m in MessageRecord.objects.filter(tenant_id="dj-a").order_by("created_at", "id")
        ]

    @step("messages.tenant_month")
    def _():
        qs = MessageRecord.objects.filter(
            tenant_id="dj-e", created_at__gte=t(3, 1), created_at__lt=t(4, 1)
        ).order_by("id")
        return [message_row(m) for m in qs]

    @step("messages.range")
    def _():
        qs = MessageRecord.objects.filter(
            created_at__range=(t(6, 1), t(7, 31, 23, 59, 59))
        ).order_by("id")
        return list(qs.values_list("id", "tenant_id"))

    @step("messages.month_lookup")
    def _():
        return [
            MessageRecord.objects.filter(created_at__month=2).count(),
            MessageRecord.objects.filter(created_at__year=2024).count(),
        ]

    @step("messages.get.composite_pk")
    def _():
        return message_row(MessageRecord.objects.get(pk=(5, t(3, 1))))

    @step("messages.get.id")
    def _():
        return message_row(MessageRecord.objects.get(id=40))

    @step("messages.group_by.tenant")
    def _():
        qs = (
            MessageRecord.objects.values("tenant_id")
            .annotate(
                n=Count("id"),
                first=Min("created_at"),
                last=Max("created_at"),
                senders=Count("sender", distinct=True),
            )
            .order_by("tenant_id")
        )
        return list(qs)

    @step("messages.group_by.month")
    def _():
        qs = (
            MessageRecord.objects.annotate(month=TruncMonth("created_at"))
            .values("month")
            .annotate(n=Count("id"))
            .order_by("month")
        )
        return list(qs)

    @step("messages.dates")
    def _():
        return list(MessageRecord.objects.dates("created_at", "month"))

    @step("messages.count_exists")
    def _():
        return [
            MessageRecord.objects.count(),
            MessageRecord.objects.filter(tenant_id="dj-c").count(),
            MessageRecord.objects.filter(tenant_id="dj-c", created_at__gte=t(12, 1)).exists(),
            MessageRecord.objects.filter(sender=9999).exists(),
        ]

    @step("messages.latest_earliest")
    def _():
        return [
            MessageRecord.objects.latest("created_at").id,
            MessageRecord.objects.earliest("created_at", "id").id,
        ]

    @step("messages.order.slice")
    def _():
        return list(
            MessageRecord.objects.order_by("-created_at", "id").values_list("id", "created_at")[
                5:10
            ]
        )

    @step("messages.sender_in")
    def _():
        return list(
            MessageRecord.objects.filter(sender__in=[101, 108, 115])
            .order_by("id")
            .values_list("id", "sender")
        )

    # ------------------------------------------------ writes over several nodes

    @step("users.update.tenant")
    def _():
        return User.objects.filter(tenant_id="dj-b").update(status=2)

    @step("users.update.f")
    def _():
        return User.objects.filter(tenant_id__in=["dj-c", "dj-d"], balance__isnull=False).update(
            balance=F("balance") + D("10.5")
        )

    @step("users.update.pk")
    def _():
        return User.objects.filter(pk=101).update(name="alice 101 renamed")

    @step("users.update.unchanged")
    def _():
        # FOUND_ROWS (Django's client flag): rows matched, not rows changed
        return User.objects.filter(tenant_id="dj-b").update(status=2)

    @step("users.save")
    def _():
        u = User.objects.get(pk=102)
        u.email = "saved@example.com"
        u.save()
        u2 = User.objects.get(pk=103)
        u2.status = 7
        u2.save(update_fields=["status"])
        u.refresh_from_db()
        return [user_row(u), User.objects.get(pk=103).status]

    @step("users.bulk_update")
    def _():
        users = list(User.objects.filter(pk__in=[125, 126, 127, 128]).order_by("user_id"))
        for i, u in enumerate(users):
            u.status = 20 + i
            u.nickname = "nick %d" % u.user_id
        n = User.objects.bulk_update(users, ["status", "nickname"])
        return [
            n,
            list(
                User.objects.filter(pk__in=[125, 126, 127, 128])
                .order_by("user_id")
                .values_list("user_id", "status", "nickname")
            ),
        ]

    @step("users.after_updates")
    def _():
        qs = seed_qs().filter(tenant_id__in=["dj-b", "dj-c", "dj-d"]).order_by("user_id")
        return [user_dict(d) for d in qs.values("user_id", "status", "balance")]

    @step("messages.update.month")
    def _():
        return MessageRecord.objects.filter(created_at__month=12).update(body="december")

    @step("messages.update.tenant")
    def _():
        return MessageRecord.objects.filter(tenant_id="dj-d").update(sender=None)

    @step("messages.delete.tenant")
    def _():
        return MessageRecord.objects.filter(tenant_id="dj-f").delete()

    @step("messages.delete.instance")
    def _():
        return MessageRecord.objects.get(pk=(100, t(4, 15, 12))).delete()

    @step("users.delete.instance")
    def _():
        return User.objects.get(pk=160).delete()

    @step("users.delete.query")
    def _():
        return User.objects.filter(tenant_id="dj-e", status=0).delete()

    @step("after_deletes")
    def _():
        return [
            seed_qs().count(),
            MessageRecord.objects.count(),
            list(
                MessageRecord.objects.filter(created_at__month=12)
                .order_by("id")
                .values_list("id", "body")
            ),
            list(
                MessageRecord.objects.filter(tenant_id="dj-d")
                .values_list("sender", flat=True)
                .distinct()
            ),
        ]

    # ------------------------------------------------ transactions

    @step("atomic.commit")
    def _():
        EXPLICIT.add(11)
        with transaction.atomic():
            User.objects.create(user_id=11, tenant_id="dj-a", name="in atomic 11", status=1)
            User.objects.filter(pk=111).update(status=5)
            MessageRecord.objects.create(
                id=300, tenant_id="dj-a", created_at=t(9, 9, 9), sender=11, body="atomic"
            )
        return "committed"

    @step("atomic.commit.check")
    def _():
        return [
            user_row(User.objects.get(pk=11)),
            User.objects.get(pk=111).status,
            MessageRecord.objects.filter(id=300).count(),
        ]

    @step("atomic.rollback")
    def _():
        try:
            with transaction.atomic():
                User.objects.filter(pk=112).update(name="rolled back")
                MessageRecord.objects.create(
                    id=301, tenant_id="dj-c", created_at=t(10, 10), body="rolled back"
                )
                User.objects.filter(tenant_id="dj-d").update(status=9)
                raise Rollback()
        except Rollback:
            return "rolled back"

    @step("atomic.rollback.check")
    def _():
        return [
            User.objects.get(pk=112).name,
            MessageRecord.objects.filter(id=301).count(),
            User.objects.filter(tenant_id="dj-d", status=9).count(),
        ]

    @step("atomic.nested")
    def _():
        with transaction.atomic():
            User.objects.filter(pk=113).update(status=4)
            try:
                with transaction.atomic():  # SAVEPOINT
                    User.objects.filter(pk=114).update(status=4)
                    MessageRecord.objects.create(
                        id=302, tenant_id="dj-e", created_at=t(11, 11), body="savepoint rolled back"
                    )
                    raise Rollback()
            except Rollback:
                pass
            with transaction.atomic():  # SAVEPOINT, released
                User.objects.filter(pk=115).update(status=4)
            MessageRecord.objects.create(
                id=303, tenant_id="dj-e", created_at=t(11, 12), body="outer"
            )
        return "committed"

    @step("atomic.nested.check")
    def _():
        return [
            list(
                User.objects.filter(pk__in=[113, 114, 115])
                .order_by("user_id")
                .values_list("user_id", "status")
            ),
            list(
                MessageRecord.objects.filter(id__in=[302, 303])
                .order_by("id")
                .values_list("id", "body")
            ),
        ]

    @step("atomic.integrity_error")
    def _():
        with transaction.atomic():
            User.objects.filter(pk=116).update(status=8)
            User.objects.create(user_id=101, tenant_id="dj-a", name="duplicate")
        return "committed"

    @step("atomic.integrity_error.check")
    def _():
        return [User.objects.get(pk=116).status, User.objects.filter(user_id=101).count()]

    @step("atomic.savepoint_integrity_error")
    def _():
        with transaction.atomic():
            User.objects.filter(pk=117).update(status=8)
            try:
                with transaction.atomic():
                    User.objects.create(user_id=102, tenant_id="dj-b", name="duplicate")
            except DatabaseError as exc:
                caught = error_of(exc)
            User.objects.filter(pk=118).update(status=8)
        return caught

    @step("atomic.savepoint_integrity_error.check")
    def _():
        return list(
            User.objects.filter(pk__in=[117, 118])
            .order_by("user_id")
            .values_list("user_id", "status")
        )

    @step("atomic.read_own_writes")
    def _():
        with transaction.atomic():
            MessageRecord.objects.create(
                id=304, tenant_id="dj-b", created_at=t(1, 2, 3), body="read in txn"
            )
            n = MessageRecord.objects.filter(tenant_id="dj-b").count()
            total = MessageRecord.objects.count()
        return [n, total]

    @step("select_for_update.one")
    def _():
        with transaction.atomic():
            u = User.objects.select_for_update().get(pk=119)
            u.balance = (u.balance or 0) + 1
            u.save()
        return plain(User.objects.get(pk=119).balance)

    @step("select_for_update.many")
    def _():
        with transaction.atomic():
            keys = list(
                User.objects.select_for_update()
                .filter(tenant_id="dj-a")
                .order_by("user_id")
                .values_list("user_id", flat=True)
            )
            n = User.objects.filter(user_id__in=keys).update(status=6)
        return [[uid(k) for k in keys], n]

    @step("select_for_update.skip_locked")
    def _():
        with transaction.atomic():
            keys = list(
                User.objects.select_for_update(skip_locked=True)
                .filter(tenant_id="dj-c", status=1)
                .order_by("user_id")
                .values_list("user_id", flat=True)[:3]
            )
        return keys

    @step("get_or_create.existing")
    def _():
        u, created = User.objects.get_or_create(
            user_id=121, defaults={"tenant_id": "dj-b", "name": "never"}
        )
        return [user_row(u), created]

    @step("get_or_create.new")
    def _():
        EXPLICIT.add(12)
        u, created = User.objects.get_or_create(
            user_id=12, defaults={"tenant_id": "dj-b", "name": "goc 12", "balance": D("12.25")}
        )
        return [user_row(u), created]

    @step("get_or_create.new.generated")
    def _():
        u, created = User.objects.get_or_create(
            tenant_id="dj-gen", name="goc generated", defaults={"status": 1}
        )
        return [user_row(u), created]

    @step("get_or_create.again")
    def _():
        u, created = User.objects.get_or_create(
            tenant_id="dj-gen", name="goc generated", defaults={"status": 2}
        )
        return [user_row(u), created]

    @step("update_or_create")
    def _():
        u, created = User.objects.update_or_create(
            user_id=122, defaults={"status": 9, "email": "uoc@example.com"}
        )
        return [user_row(u), created]

    @step("get_or_create.message")
    def _():
        m, created = MessageRecord.objects.get_or_create(
            id=305, created_at=t(6, 6, 6), defaults={"tenant_id": "dj-c", "body": "goc message"}
        )
        return [message_row(m), created]

    # ------------------------------------------------ a new connection each
    # As a web request with Django's default CONN_MAX_AGE = 0: a connection
    # with nothing written yet, whose transaction starts with a read.

    @step("request.atomic.read_then_write")
    def _():
        connection.close()
        with transaction.atomic():
            status = User.objects.filter(pk=123).values_list("status", flat=True).get()
            User.objects.filter(pk=123).update(status=status + 10)
            MessageRecord.objects.create(
                id=310, tenant_id="dj-a", created_at=t(3, 3, 3), sender=123, body="request"
            )
        return [User.objects.get(pk=123).status, MessageRecord.objects.filter(id=310).count()]

    @step("request.atomic.unsharded")
    def _():
        connection.close()
        with transaction.atomic():
            tenant = Tenant.objects.get(slug="dj-b")
            tenant.active = False
            tenant.save()
        return list(Tenant.objects.filter(active=False).values_list("slug", flat=True))

    @step("request.select_for_update")
    def _():
        connection.close()
        with transaction.atomic():
            u = User.objects.select_for_update().get(pk=124)
            u.status = 3
            u.save(update_fields=["status"])
        return User.objects.get(pk=124).status

    @step("request.atomic.rollback")
    def _():
        connection.close()
        try:
            with transaction.atomic():
                n = MessageRecord.objects.filter(tenant_id="dj-c").count()
                MessageRecord.objects.filter(tenant_id="dj-c").update(body="gone")
                raise Rollback()
        except Rollback:
            pass
        return [n, MessageRecord.objects.filter(body="gone").count()]

    @step("request.get_or_create.message")
    def _():
        connection.close()
        m, created = MessageRecord.objects.get_or_create(
            id=311,
            created_at=t(5, 31, 23, 59, 59),
            defaults={"tenant_id": "dj-d", "body": "request goc"},
        )
        return [message_row(m), created]

    # ------------------------------------------------ the end state

    @step("final.users")
    def _():
        qs = (
            User.objects.filter(tenant_id__startswith="dj-")
            .exclude(tenant_id="dj-gen")
            .order_by("user_id")
        )
        return [user_row(u) for u in qs]

    @step("final.users.generated")
    def _():
        return [user_row(u) for u in User.objects.filter(tenant_id="dj-gen").order_by("name")]

    @step("final.messages")
    def _():
        return [message_row(m) for m in MessageRecord.objects.order_by("id", "created_at")]

    @step("final.tenants")
    def _():
        return list(Tenant.objects.order_by("id").values_list("id", "slug", "name", "active"))

    emit({"step": "done"})


def flush():
    """The second part, run after the caller has looked at the tables."""

    @step("flush")
    def _():
        # what Django's TransactionTestCase does after each test: TRUNCATE
        # every table (then content types are created again)
        call_command("flush", verbosity=0, interactive=False)
        return [
            User.objects.count(),
            MessageRecord.objects.count(),
            Tenant.objects.count(),
            ContentType.objects.count(),
        ]

    emit({"step": "flush.done"})


if __name__ == "__main__":
    {"main": main, "flush": flush}[PART]()
