"""Models of the Django program (see run.py).

`User` and `MessageRecord` are the proxy's sharded logical tables of
examples/wework.toml, with the columns of the differential harness
(USERS_DDL, MESSAGES_DDL in integration-tests/src/sharding.rs) as Django
declares them; Django's migrations create them (through ShardGate: DDL on a
sharded logical table fans out to every physical table). `Tenant` is an
ordinary unsharded table, which lands on the default data source.
"""

from django.db import models


class Tenant(models.Model):
    """Unsharded (ds0 through ShardGate); Django's own id (AUTO_INCREMENT)."""

    slug = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    active = models.BooleanField(default=True)


class User(models.Model):
    """`users`, sharded by user_id (4 databases x 16 tables). An INSERT
    without user_id gets a snowflake key from ShardGate and an
    AUTO_INCREMENT one from plain MariaDB."""

    user_id = models.BigAutoField(primary_key=True)
    tenant_id = models.CharField(max_length=64, null=True, db_index=True)
    name = models.CharField(max_length=100)
    email = models.CharField(max_length=200, null=True)
    balance = models.DecimalField(max_digits=20, decimal_places=4, null=True)
    created_at = models.DateTimeField(null=True)
    status = models.SmallIntegerField(default=0)
    # added by migration 0002 (ALTER TABLE on the sharded table)
    nickname = models.CharField(max_length=50, default="", blank=True)

    class Meta:
        db_table = "users"
        indexes = [models.Index(fields=["status", "tenant_id"], name="users_status_tenant")]


class MessageRecord(models.Model):
    """`message_records`, sharded by tenant_id (crc32 mod 4) and by the
    month of created_at within 2024 (12 tables a database). Its primary key
    is (id, created_at), as in the harness."""

    pk = models.CompositePrimaryKey("id", "created_at")
    id = models.BigIntegerField()
    tenant_id = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    sender = models.BigIntegerField(null=True)
    body = models.TextField()

    class Meta:
        db_table = "message_records"
        indexes = [models.Index(fields=["tenant_id", "created_at"], name="msg_tenant_created")]
