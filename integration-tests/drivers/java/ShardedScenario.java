// ShardGate sharded-SQL driver scenario: MariaDB Connector/J with server-side
// prepared statements (useServerPrepStmts=true: COM_STMT_PREPARE / EXECUTE)
// over the seed's sharded tables (users, message_records) and broadcast
// tables, every statement with bound parameters.
//
// Run (single-file source launch, no build tool):
//   java -cp /usr/share/java/mariadb-java-client.jar ShardedScenario.java HOST PORT USER PASSWORD DATABASE
//   (or env SG_HOST, SG_PORT, SG_USER, SG_PASSWORD, SG_DATABASE)
//
// It expects the differential harness's seed data (integration-tests/src/sharding.rs)
// and writes only rows with user_id / message id in [BASE, BASE + 99999] and
// users rows with tenant_id 'jdbc-gen' (generated keys). It prints a
// canonical transcript, one JSON object per line, which must be identical
// against the plain reference database (wework_ref) and through ShardGate
// (wework): every printed row order comes from an ORDER BY, the rows of
// unordered statements are printed sorted, generated key values are never
// printed (the reference's AUTO_INCREMENT and ShardGate's snowflake differ),
// nor the database name, connection ids or auto-increment column flags.

import java.io.PrintStream;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TimeZone;

public class ShardedScenario {
    /** This scenario's own id range: users.user_id and message_records.id. */
    static final long BASE = 9_000_000_000L;
    static final long TOP = BASE + 99_999;
    static final String TENANT = "jdbc-w";
    static final String GEN_TENANT = "jdbc-gen";

    static PrintStream out;

    // ---- minimal canonical JSON ----
    static String json(Object v) {
        StringBuilder sb = new StringBuilder();
        writeJson(sb, v);
        return sb.toString();
    }

    @SuppressWarnings("unchecked")
    static void writeJson(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof String) {
            String s = (String) v;
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"': sb.append("\\\""); break;
                    case '\\': sb.append("\\\\"); break;
                    case '\n': sb.append("\\n"); break;
                    case '\r': sb.append("\\r"); break;
                    case '\t': sb.append("\\t"); break;
                    default:
                        if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                        else sb.append(c);
                }
            }
            sb.append('"');
        } else if (v instanceof Integer || v instanceof Long || v instanceof Boolean) {
            sb.append(v);
        } else if (v instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<String, Object> e : ((Map<String, Object>) v).entrySet()) {
                if (!first) sb.append(',');
                first = false;
                writeJson(sb, e.getKey());
                sb.append(':');
                writeJson(sb, e.getValue());
            }
            sb.append('}');
        } else if (v instanceof List) {
            sb.append('[');
            boolean first = true;
            for (Object o : (List<Object>) v) {
                if (!first) sb.append(',');
                first = false;
                writeJson(sb, o);
            }
            sb.append(']');
        } else {
            writeJson(sb, v.toString());
        }
    }

    static void emit(Map<String, Object> rec) {
        out.println(json(rec));
        out.flush();
    }

    static Object render(Object v) {
        if (v == null) return null;
        if (v instanceof String) return v;
        if (v instanceof BigDecimal) return "BigDecimal:" + ((BigDecimal) v).toPlainString();
        if (v instanceof byte[]) {
            StringBuilder sb = new StringBuilder("hex:");
            for (byte x : (byte[]) v) sb.append(String.format("%02x", x & 0xff));
            return sb.toString();
        }
        return v.getClass().getSimpleName() + ":" + v;
    }

    static Map<String, Object> error(SQLException e) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("code", e.getErrorCode());
        m.put("sqlstate", e.getSQLState());
        // as the differential harness: the error number (and SQLSTATE), not the
        // message, to which ShardGate adds the data source of a multi-node failure
        return m;
    }

    /** Column metadata (no catalog, no auto-increment flag) and rows. */
    static List<List<Object>> putResultSet(Map<String, Object> r, ResultSet rs, boolean sort) throws Exception {
        ResultSetMetaData md = rs.getMetaData();
        int n = md.getColumnCount();
        List<Object> cols = new ArrayList<>();
        for (int i = 1; i <= n; i++) {
            Map<String, Object> c = new LinkedHashMap<>();
            // the database connected to (wework_ref or wework) prints as <db>
            String catalog = md.getCatalogName(i);
            c.put("catalog", catalog != null && catalog.equals(database) ? "<db>" : catalog);
            c.put("label", md.getColumnLabel(i));
            c.put("name", md.getColumnName(i));
            c.put("table", md.getTableName(i));
            c.put("type", md.getColumnTypeName(i));
            c.put("jdbc_type", md.getColumnType(i));
            c.put("precision", md.getPrecision(i));
            c.put("scale", md.getScale(i));
            c.put("nullable", md.isNullable(i));
            c.put("signed", md.isSigned(i));
            c.put("class", md.getColumnClassName(i));
            cols.add(c);
        }
        List<List<Object>> raw = new ArrayList<>();
        List<String> rows = new ArrayList<>();
        while (rs.next()) {
            List<Object> values = new ArrayList<>();
            List<Object> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                Object v = rs.getObject(i);
                values.add(v);
                row.add(render(v));
            }
            raw.add(values);
            rows.add(json(row));
        }
        if (sort) Collections.sort(rows);
        r.put("columns", cols);
        r.put("rows", new RawJson(rows));
        return raw;
    }

    /** Pre-rendered JSON rows (so that sorted rows print as arrays). */
    static final class RawJson {
        final List<String> rows;
        RawJson(List<String> rows) { this.rows = rows; }
        @Override public String toString() { return String.join(",", rows); }
    }

    static void emitRec(Map<String, Object> rec) {
        // RawJson is spliced in verbatim
        StringBuilder sb = new StringBuilder("{");
        boolean first = true;
        for (Map.Entry<String, Object> e : rec.entrySet()) {
            if (!first) sb.append(',');
            first = false;
            writeJson(sb, e.getKey());
            sb.append(':');
            if (e.getValue() instanceof RawJson) sb.append('[').append(e.getValue()).append(']');
            else writeJson(sb, e.getValue());
        }
        sb.append('}');
        out.println(sb);
        out.flush();
    }

    interface Binder {
        void bind(PreparedStatement ps) throws Exception;
    }

    interface Body {
        void run(Map<String, Object> r) throws Exception;
    }

    static Connection c;
    static String database;

    static void step(String name, Body body) throws Exception {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("step", name);
        try {
            body.run(r);
        } catch (SQLException e) {
            r.put("error", error(e));
        }
        emitRec(r);
    }

    /** A prepared statement; rows as the ORDER BY gives them. Returns the raw rows. */
    static List<List<Object>> query(String name, String sql, Binder binder) throws Exception {
        return query(name, sql, false, binder);
    }

    /** A prepared statement without a total ORDER BY: rows printed sorted. */
    static List<List<Object>> querySorted(String name, String sql, Binder binder) throws Exception {
        return query(name, sql, true, binder);
    }

    static List<List<Object>> query(String name, String sql, boolean sort, Binder binder) throws Exception {
        List<List<Object>> raw = new ArrayList<>();
        step(name, r -> {
            r.put("sql", sql);
            try (PreparedStatement ps = c.prepareStatement(sql)) {
                binder.bind(ps);
                if (ps.execute()) {
                    try (ResultSet rs = ps.getResultSet()) { raw.addAll(putResultSet(r, rs, sort)); }
                } else {
                    r.put("affected", ps.getUpdateCount());
                }
            }
        });
        return raw;
    }

    /** A prepared write: the affected-row count. */
    static void update(String name, String sql, Binder binder) throws Exception {
        query(name, sql, false, binder);
    }

    static void text(String name, Body body) throws Exception {
        step(name, body);
    }

    static String arg(String[] a, int i, String env, String dflt) {
        if (a.length > i) return a[i];
        String v = System.getenv(env);
        return v != null ? v : dflt;
    }

    static String placeholders(int rows, int cols) {
        StringBuilder one = new StringBuilder("(");
        for (int i = 0; i < cols; i++) one.append(i == 0 ? "?" : ", ?");
        one.append(')');
        List<String> all = new ArrayList<>();
        for (int i = 0; i < rows; i++) all.add(one.toString());
        return String.join(", ", all);
    }

    static final String USER_COLUMNS = "user_id, tenant_id, name, email, balance, created_at, status";
    static final String[] NAMES = {"jdbc 漢字", "jdbc 🦀 crab", "O'Brien", "back\\slash", "", "Zoë", "한국어", "plain"};

    /** Binds row i of this scenario's users (7 columns) from parameter index p. */
    static void bindUser(PreparedStatement ps, int p, long id, int i) throws Exception {
        ps.setLong(p, id);
        ps.setString(p + 1, TENANT);
        ps.setString(p + 2, NAMES[i % NAMES.length] + " " + i);
        if (i % 3 == 0) ps.setNull(p + 3, Types.VARCHAR); else ps.setString(p + 3, "u" + i + "@example.com");
        if (i % 4 == 1) ps.setNull(p + 4, Types.DECIMAL);
        else ps.setBigDecimal(p + 4, new BigDecimal((i % 2 == 0 ? "-" : "") + (i * 1234) + ".5678"));
        if (i % 5 == 2) ps.setNull(p + 5, Types.TIMESTAMP);
        else ps.setTimestamp(p + 5, Timestamp.valueOf(String.format("2024-%02d-01 00:00:00", 1 + i % 12)));
        ps.setInt(p + 6, i % 3);
    }

    static long getLong(List<List<Object>> rows, int row) {
        return ((Number) rows.get(row).get(0)).longValue();
    }

    public static void main(String[] a) throws Exception {
        TimeZone.setDefault(TimeZone.getTimeZone("UTC"));
        out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        String host = arg(a, 0, "SG_HOST", "127.0.0.1");
        String port = arg(a, 1, "SG_PORT", "13306");
        String user = arg(a, 2, "SG_USER", "root");
        String password = arg(a, 3, "SG_PASSWORD", "");
        String db = arg(a, 4, "SG_DATABASE", "wework_ref");
        database = db;
        String url = "jdbc:mariadb://" + host + ":" + port + "/" + db + "?useServerPrepStmts=true";

        try (Connection conn = DriverManager.getConnection(url, user, password)) {
            c = conn;
            // leftovers of an earlier run; not in the transcript
            try (PreparedStatement ps = c.prepareStatement("DELETE FROM users WHERE user_id BETWEEN ? AND ?")) {
                ps.setLong(1, BASE);
                ps.setLong(2, TOP);
                ps.executeUpdate();
            }
            try (PreparedStatement ps = c.prepareStatement("DELETE FROM message_records WHERE id BETWEEN ? AND ?")) {
                ps.setLong(1, BASE);
                ps.setLong(2, TOP);
                ps.executeUpdate();
            }
            try (PreparedStatement ps = c.prepareStatement("DELETE FROM users WHERE tenant_id = ?")) {
                ps.setString(1, GEN_TENANT);
                ps.executeUpdate();
            }

            // ---------------------------------------------------- point reads
            List<List<Object>> picked = query("pick_ids", "SELECT user_id FROM users ORDER BY user_id LIMIT ?, ?",
                    ps -> { ps.setInt(1, 100); ps.setInt(2, 12); });
            if (picked.size() < 12) throw new IllegalStateException("the seed data is not loaded: " + picked.size() + " ids");
            long[] ids = new long[12];
            for (int i = 0; i < 12; i++) ids[i] = getLong(picked, i);
            long big = 1_700_000_000_000_000_000L + 499L * 1_000_003L;

            query("point_user", "SELECT * FROM users WHERE user_id = ?", ps -> ps.setLong(1, ids[0]));
            query("point_user_big_id", "SELECT * FROM users WHERE user_id = ?", ps -> ps.setLong(1, big));
            query("point_user_int_param", "SELECT user_id, name FROM users WHERE user_id = ?", ps -> ps.setInt(1, (int) ids[1]));
            query("point_user_string_param", "SELECT user_id, name FROM users WHERE user_id = ?", ps -> ps.setString(1, Long.toString(ids[2])));
            query("point_user_missing", "SELECT * FROM users WHERE user_id = ?", ps -> ps.setLong(1, 999_999_999L));
            query("point_user_null", "SELECT * FROM users WHERE user_id = ?", ps -> ps.setNull(1, Types.BIGINT));
            query("point_user_alias", "SELECT u.user_id, u.name, u.balance FROM users u WHERE u.user_id = ? AND u.status >= ?",
                    ps -> { ps.setLong(1, ids[3]); ps.setInt(2, 0); });
            query("in_two", "SELECT user_id, name, email FROM users WHERE user_id IN (?, ?) ORDER BY user_id",
                    ps -> { ps.setLong(1, ids[4]); ps.setLong(2, ids[9]); });
            query("in_many", "SELECT * FROM users WHERE user_id IN (?, ?, ?, ?, ?) ORDER BY user_id DESC",
                    ps -> { for (int i = 0; i < 5; i++) ps.setLong(i + 1, ids[i + 5]); });
            query("or_keys", "SELECT user_id, tenant_id FROM users WHERE user_id = ? OR user_id = ? ORDER BY user_id",
                    ps -> { ps.setLong(1, ids[6]); ps.setLong(2, big); });
            query("between_keys", "SELECT * FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id",
                    ps -> { ps.setLong(1, ids[0]); ps.setLong(2, ids[7]); });
            query("between_wide", "SELECT user_id, balance, created_at FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id",
                    ps -> { ps.setLong(1, 100); ps.setLong(2, 1500); });
            querySorted("range_open", "SELECT user_id, status FROM users WHERE user_id > ? AND status = ?",
                    ps -> { ps.setLong(1, 105_000); ps.setInt(2, 1); });
            query("messages_tenant_month", "SELECT * FROM message_records WHERE tenant_id = ? AND created_at BETWEEN ? AND ? ORDER BY created_at, id",
                    ps -> {
                        ps.setString(1, "t3");
                        ps.setTimestamp(2, Timestamp.valueOf("2024-03-01 00:00:00"));
                        ps.setTimestamp(3, Timestamp.valueOf("2024-03-31 23:59:59"));
                    });
            query("messages_tenant_boundary", "SELECT id, tenant_id, created_at FROM message_records WHERE tenant_id = ? AND created_at >= ? AND created_at < ? ORDER BY id",
                    ps -> {
                        ps.setString(1, "t33");
                        ps.setTimestamp(2, Timestamp.valueOf("2024-01-31 23:59:59"));
                        ps.setTimestamp(3, Timestamp.valueOf("2024-02-01 00:00:01"));
                    });
            query("messages_tenant_string_dates", "SELECT id, created_at, sender FROM message_records WHERE tenant_id = ? AND created_at >= ? AND created_at <= ? ORDER BY created_at DESC, id",
                    ps -> {
                        ps.setString(1, "t7");
                        ps.setString(2, "2024-06-15 00:00:00");
                        ps.setString(3, "2024-08-15 00:00:00");
                    });
            query("messages_tenants_in", "SELECT id, tenant_id, created_at FROM message_records WHERE tenant_id IN (?, ?) AND created_at >= ? ORDER BY created_at, id",
                    ps -> { ps.setString(1, "t1"); ps.setString(2, "t2"); ps.setTimestamp(3, Timestamp.valueOf("2024-12-01 00:00:00")); });
            query("messages_tenant_only", "SELECT id, created_at FROM message_records WHERE tenant_id = ? ORDER BY created_at, id",
                    ps -> ps.setString(1, "t9"));
            query("messages_created_at_only", "SELECT id, tenant_id FROM message_records WHERE created_at = ? ORDER BY id",
                    ps -> ps.setTimestamp(1, Timestamp.valueOf("2024-02-01 00:00:00")));

            // -------------------------------------------------- scatter reads
            query("order_limit_offset", "SELECT * FROM users ORDER BY user_id LIMIT ?, ?",
                    ps -> { ps.setInt(1, 2985); ps.setInt(2, 20); });
            query("order_desc_limit_offset", "SELECT user_id, name FROM users ORDER BY user_id DESC LIMIT ? OFFSET ?",
                    ps -> { ps.setInt(1, 7); ps.setInt(2, 40); });
            query("order_literal_limit", "SELECT user_id, name, balance FROM users WHERE status = ? ORDER BY balance DESC, user_id LIMIT 10",
                    ps -> ps.setInt(1, 2));
            query("order_by_name", "SELECT user_id, name FROM users WHERE tenant_id = ? ORDER BY name, user_id",
                    ps -> ps.setString(1, "t11"));
            query("order_nulls_first", "SELECT user_id, created_at FROM users WHERE status <> ? ORDER BY created_at, user_id LIMIT ?",
                    ps -> { ps.setInt(1, 1); ps.setInt(2, 30); });
            query("order_hidden_columns", "SELECT name FROM users WHERE status = ? ORDER BY created_at DESC, user_id LIMIT ?",
                    ps -> { ps.setInt(1, 0); ps.setInt(2, 15); });
            query("order_messages", "SELECT id, tenant_id, created_at FROM message_records WHERE sender > ? ORDER BY created_at DESC, id LIMIT ?, ?",
                    ps -> { ps.setLong(1, 50_000); ps.setInt(2, 10); ps.setInt(3, 10); });
            querySorted("scatter_unordered", "SELECT user_id, tenant_id, balance FROM users WHERE status = ? AND balance > ?",
                    ps -> { ps.setInt(1, 1); ps.setBigDecimal(2, new BigDecimal("90000")); });
            query("group_by_aggregates", "SELECT tenant_id, COUNT(*), COUNT(email), SUM(balance), AVG(balance), MIN(created_at), MAX(balance) FROM users WHERE status <> ? GROUP BY tenant_id ORDER BY tenant_id",
                    ps -> ps.setInt(1, 2));
            query("having_count", "SELECT tenant_id, COUNT(*) AS n FROM users GROUP BY tenant_id HAVING COUNT(*) > ? ORDER BY tenant_id",
                    ps -> ps.setInt(1, 75));
            query("having_sum_decimal", "SELECT status, SUM(balance) AS s, AVG(balance) AS a FROM users GROUP BY status HAVING SUM(balance) > ? ORDER BY status",
                    ps -> ps.setBigDecimal(1, new BigDecimal("-1000000.5")));
            query("having_avg_alias", "SELECT tenant_id, AVG(balance) AS a, MIN(user_id), MAX(user_id) FROM users GROUP BY tenant_id HAVING a < ? ORDER BY tenant_id",
                    ps -> ps.setInt(1, 50_000));
            query("order_by_aggregate_limit", "SELECT tenant_id, COUNT(*) AS n FROM users GROUP BY tenant_id ORDER BY n DESC, tenant_id LIMIT ?",
                    ps -> ps.setInt(1, 5));
            querySorted("group_by_unordered", "SELECT status, COUNT(*), SUM(balance) FROM users WHERE user_id > ? GROUP BY status",
                    ps -> ps.setLong(1, 0));
            query("aggregates_no_group", "SELECT COUNT(*), SUM(balance), AVG(balance), MIN(user_id), MAX(user_id), COUNT(email), MIN(name), MAX(created_at) FROM users WHERE status = ?",
                    ps -> ps.setInt(1, 0));
            query("aggregates_empty", "SELECT COUNT(*), SUM(balance), AVG(balance), MAX(name) FROM users WHERE status = ?",
                    ps -> ps.setInt(1, 99));
            query("messages_group_by_month", "SELECT DATE_FORMAT(created_at, '%Y-%m') AS ym, COUNT(*), COUNT(sender), MIN(id), MAX(id) FROM message_records WHERE created_at >= ? GROUP BY ym ORDER BY ym",
                    ps -> ps.setTimestamp(1, Timestamp.valueOf("2024-06-30 23:59:59")));
            query("distinct_ordered", "SELECT DISTINCT tenant_id FROM users WHERE status = ? ORDER BY tenant_id",
                    ps -> ps.setInt(1, 2));
            querySorted("distinct_unordered", "SELECT DISTINCT status, tenant_id FROM users WHERE tenant_id IN (?, ?, ?)",
                    ps -> { ps.setString(1, "t1"); ps.setString(2, "t2"); ps.setString(3, "t30"); });
            query("count_distinct", "SELECT COUNT(DISTINCT tenant_id) FROM users WHERE user_id > ?",
                    ps -> ps.setLong(1, 50_000));
            query("count_distinct_group", "SELECT status, COUNT(DISTINCT tenant_id) FROM users WHERE balance IS NOT NULL AND status >= ? GROUP BY status ORDER BY status",
                    ps -> ps.setInt(1, 0));
            query("broadcast_count", "SELECT COUNT(*), SUM(id) FROM sys_permissions WHERE id > ?", ps -> ps.setInt(1, 3));
            query("broadcast_configs", "SELECT k, v FROM sys_configs WHERE k LIKE ? ORDER BY k", ps -> ps.setString(1, "%.%"));
            query("broadcast_order_limit", "SELECT name FROM sys_permissions ORDER BY id DESC LIMIT ?", ps -> ps.setInt(1, 3));
            query("join_broadcast", "SELECT u.user_id, p.name FROM users u JOIN sys_permissions p ON p.id = u.status + 1 WHERE u.user_id IN (?, ?, ?) ORDER BY u.user_id",
                    ps -> { ps.setLong(1, ids[0]); ps.setLong(2, ids[1]); ps.setLong(3, ids[2]); });

            // --------------------------------------------------------- writes
            final int n = 8; // BASE + 0..7: every database, several tables
            String insertUsers = "INSERT INTO users (" + USER_COLUMNS + ") VALUES " + placeholders(n, 7);
            update("insert_multi_row", insertUsers, ps -> { for (int i = 0; i < n; i++) bindUser(ps, 1 + 7 * i, BASE + i, i); });
            query("insert_multi_row_read_back", "SELECT * FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); });
            // a duplicate in a multi-row INSERT across nodes: the statement fails as a whole
            update("insert_multi_row_duplicate", "INSERT INTO users (" + USER_COLUMNS + ") VALUES " + placeholders(3, 7), ps -> {
                bindUser(ps, 1, BASE + 8, 8);
                bindUser(ps, 8, BASE + 9, 9);
                bindUser(ps, 15, BASE + 2, 2);
            });
            query("after_duplicate", "SELECT user_id FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); });
            update("insert_messages", "INSERT INTO message_records (id, tenant_id, created_at, sender, body) VALUES " + placeholders(6, 5), ps -> {
                for (int i = 0; i < 6; i++) {
                    int p = 1 + 5 * i;
                    ps.setLong(p, BASE + i);
                    ps.setString(p + 1, i % 2 == 0 ? "jdbc-a" : "jdbc-b");
                    ps.setTimestamp(p + 2, Timestamp.valueOf(i < 2 ? "2024-01-31 23:59:59" : String.format("2024-%02d-01 00:00:00", 2 * i)));
                    if (i == 3) ps.setNull(p + 3, Types.BIGINT); else ps.setLong(p + 3, BASE + i);
                    ps.setString(p + 4, "jdbc message 漢字 🦀 #" + i);
                }
            });
            query("messages_read_back", "SELECT * FROM message_records WHERE id BETWEEN ? AND ? ORDER BY id",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); });
            query("messages_read_back_by_tenant", "SELECT id, created_at FROM message_records WHERE tenant_id = ? AND created_at BETWEEN ? AND ? ORDER BY id",
                    ps -> { ps.setString(1, "jdbc-a"); ps.setTimestamp(2, Timestamp.valueOf("2024-01-01 00:00:00")); ps.setTimestamp(3, Timestamp.valueOf("2024-12-31 23:59:59")); });
            step("insert_batch", r -> {
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO users (" + USER_COLUMNS + ") VALUES (?, ?, ?, ?, ?, ?, ?)")) {
                    for (int i = 10; i < 14; i++) {
                        bindUser(ps, 1, BASE + i, i);
                        ps.addBatch();
                    }
                    // update counts differ between COM_STMT_BULK_EXECUTE and one EXECUTE per row
                    r.put("statements", ps.executeBatch().length);
                }
            });
            query("insert_batch_read_back", "SELECT user_id, name, status FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id",
                    ps -> { ps.setLong(1, BASE + 10); ps.setLong(2, BASE + 19); });

            // generated keys: the value differs by nature (AUTO_INCREMENT vs snowflake); only use it
            long[] gen = new long[2];
            step("insert_generated_key", r -> {
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO users (tenant_id, name, balance, status) VALUES (?, ?, ?, ?)",
                        Statement.RETURN_GENERATED_KEYS)) {
                    ps.setString(1, GEN_TENANT);
                    ps.setString(2, "generated 🦀");
                    ps.setBigDecimal(3, new BigDecimal("12.3400"));
                    ps.setInt(4, 1);
                    r.put("affected", ps.executeUpdate());
                    try (ResultSet rs = ps.getGeneratedKeys()) {
                        r.put("has_key", rs.next());
                        gen[0] = rs.getLong(1);
                        r.put("key_non_zero", gen[0] != 0);
                    }
                }
            });
            query("generated_key_read_back", "SELECT tenant_id, name, balance, status FROM users WHERE user_id = ?", ps -> ps.setLong(1, gen[0]));
            step("insert_generated_keys_multi_row", r -> {
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO users (tenant_id, name, status) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)",
                        Statement.RETURN_GENERATED_KEYS)) {
                    for (int i = 0; i < 3; i++) {
                        ps.setString(1 + 3 * i, GEN_TENANT);
                        ps.setString(2 + 3 * i, "generated row " + i);
                        ps.setInt(3 + 3 * i, i);
                    }
                    r.put("affected", ps.executeUpdate());
                    try (ResultSet rs = ps.getGeneratedKeys()) {
                        r.put("has_key", rs.next());
                        gen[1] = rs.getLong(1);
                        r.put("key_non_zero", gen[1] != 0);
                    }
                }
            });
            // the first generated key is the first row's (as MySQL does)
            query("generated_first_key_read_back", "SELECT tenant_id, name, status FROM users WHERE user_id = ?", ps -> ps.setLong(1, gen[1]));
            query("generated_rows", "SELECT name, status FROM users WHERE tenant_id = ? ORDER BY name", ps -> ps.setString(1, GEN_TENANT));

            // UPDATE / DELETE by key
            update("update_by_key", "UPDATE users SET balance = balance + ?, name = ? WHERE user_id = ?",
                    ps -> { ps.setBigDecimal(1, new BigDecimal("1.5")); ps.setString(2, "更新 🦀"); ps.setLong(3, BASE); });
            update("update_by_keys_in", "UPDATE users SET status = ? WHERE user_id IN (?, ?, ?)",
                    ps -> { ps.setInt(1, 5); ps.setLong(2, BASE + 1); ps.setLong(3, BASE + 2); ps.setLong(4, BASE + 3); });
            update("update_by_key_no_change", "UPDATE users SET status = status WHERE user_id = ?", ps -> ps.setLong(1, BASE + 4));
            update("update_by_key_missing", "UPDATE users SET status = ? WHERE user_id = ?", ps -> { ps.setInt(1, 1); ps.setLong(2, TOP); });
            update("delete_by_key", "DELETE FROM users WHERE user_id = ?", ps -> ps.setLong(1, BASE + 5));
            query("after_by_key", "SELECT user_id, name, balance, status FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); });
            // UPDATE / DELETE without key, within this scenario's rows
            update("update_without_key", "UPDATE users SET status = ? WHERE tenant_id = ? AND status <> ?",
                    ps -> { ps.setInt(1, 7); ps.setString(2, TENANT); ps.setInt(3, 5); });
            update("update_key_range", "UPDATE users SET email = NULL WHERE user_id BETWEEN ? AND ? AND email IS NOT NULL",
                    ps -> { ps.setLong(1, BASE + 10); ps.setLong(2, BASE + 19); });
            update("update_messages_without_key", "UPDATE message_records SET body = CONCAT(body, ?) WHERE id BETWEEN ? AND ?",
                    ps -> { ps.setString(1, " ✓"); ps.setLong(2, BASE); ps.setLong(3, TOP); });
            update("delete_without_key", "DELETE FROM users WHERE tenant_id = ? AND balance IS NULL",
                    ps -> ps.setString(1, TENANT));
            update("delete_messages_without_key", "DELETE FROM message_records WHERE id BETWEEN ? AND ? AND created_at < ?",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); ps.setTimestamp(3, Timestamp.valueOf("2024-02-01 00:00:00")); });
            query("after_without_key", "SELECT user_id, email, status FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); });
            query("messages_after_without_key", "SELECT id, body FROM message_records WHERE id BETWEEN ? AND ? ORDER BY id",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); });

            // ---------------------------------------------------- transactions
            // BASE + 20 / + 21 / + 22 / + 23 are on four different databases
            String insertTwo = "INSERT INTO users (" + USER_COLUMNS + ") VALUES " + placeholders(2, 7);
            text("txn_rollback_begin", r -> { c.setAutoCommit(false); r.put("ok", true); });
            update("txn_rollback_insert", insertTwo, ps -> { bindUser(ps, 1, BASE + 20, 20); bindUser(ps, 8, BASE + 21, 21); });
            update("txn_rollback_update", "UPDATE users SET name = ? WHERE user_id IN (?, ?)",
                    ps -> { ps.setString(1, "rolled back"); ps.setLong(2, BASE + 6); ps.setLong(3, BASE + 7); });
            query("txn_rollback_inside", "SELECT user_id, name FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); });
            query("txn_rollback_inside_point", "SELECT user_id, name FROM users WHERE user_id = ?", ps -> ps.setLong(1, BASE + 21));
            text("txn_rollback", r -> { c.rollback(); c.setAutoCommit(true); r.put("ok", true); });
            query("txn_rollback_after", "SELECT user_id, name FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); });
            text("txn_commit_begin", r -> { c.setAutoCommit(false); r.put("ok", true); });
            update("txn_commit_insert", insertTwo, ps -> { bindUser(ps, 1, BASE + 22, 22); bindUser(ps, 8, BASE + 23, 23); });
            update("txn_commit_update", "UPDATE users SET name = ? WHERE user_id = ?", ps -> { ps.setString(1, "committed"); ps.setLong(2, BASE + 7); });
            update("txn_commit_delete", "DELETE FROM users WHERE user_id = ?", ps -> ps.setLong(1, BASE + 6));
            query("txn_commit_inside", "SELECT user_id, name FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); });
            text("txn_commit", r -> { c.commit(); c.setAutoCommit(true); r.put("ok", true); });

            query("final_users", "SELECT * FROM users WHERE user_id BETWEEN ? AND ? ORDER BY user_id",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); });
            query("final_messages", "SELECT * FROM message_records WHERE id BETWEEN ? AND ? ORDER BY id",
                    ps -> { ps.setLong(1, BASE); ps.setLong(2, TOP); });
            // the generated rows go (their keys differ by nature); the id range stays for the caller's checks
            update("delete_generated", "DELETE FROM users WHERE tenant_id = ?", ps -> ps.setString(1, GEN_TENANT));
            emitRec(new LinkedHashMap<>(Map.of("step", "done")));
        }
    }
}
