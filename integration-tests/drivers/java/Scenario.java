// ShardGate driver scenario: MariaDB Connector/J over JDBC with server-side
// prepared statements (useServerPrepStmts=true: COM_STMT_PREPARE / EXECUTE).
//
// Run (single-file source launch, no build tool):
//   java -cp /usr/share/java/mariadb-java-client.jar Scenario.java HOST PORT USER PASSWORD DATABASE
//   (or env SG_HOST, SG_PORT, SG_USER, SG_PASSWORD, SG_DATABASE)
//
// Prints a canonical transcript, one JSON object per line. It must be
// identical against ds0 directly and through ShardGate, so nothing prints the
// database/catalog name, connection ids, server version or timings.

import java.io.ByteArrayInputStream;
import java.io.PrintStream;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.sql.Connection;
import java.sql.Date;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TimeZone;

public class Scenario {
    static final String TABLE = "it_jdbc";
    static final byte[] SMALL_BLOB = {0x00, (byte) 0xFF, 0x01, 0x7F, (byte) 0x80, 0x00, 0x27, 0x5C, 0x22, 0x0A};
    static final byte[] BIG_BLOB = new byte[100_000];
    static final byte[] STREAM_BLOB = new byte[70_000];
    static final String UNICODE_TEXT = "🦀 crab 漢字 ünïcödé 'quoted' \\ backslash";

    static {
        for (int i = 0; i < BIG_BLOB.length; i++) BIG_BLOB[i] = (byte) ((i * 31 + 7) % 256);
        for (int i = 0; i < STREAM_BLOB.length; i++) STREAM_BLOB[i] = (byte) ((i * 13 + 1) % 256);
    }

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
        } else if (v instanceof int[]) {
            List<Object> l = new ArrayList<>();
            for (int x : (int[]) v) l.add(x);
            writeJson(sb, l);
        } else {
            writeJson(sb, v.toString());
        }
    }

    static void emit(Map<String, Object> rec) {
        out.println(json(rec));
        out.flush();
    }

    static Map<String, Object> rec(String step) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("step", step);
        return m;
    }

    // ---- canonical values ----
    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x & 0xff));
        return sb.toString();
    }

    static String renderBytes(byte[] b) throws Exception {
        if (b.length <= 64) return "hex:" + hex(b);
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        return "bytes:len=" + b.length + ",sha256=" + hex(md.digest(b));
    }

    static Object render(Object v) throws Exception {
        if (v == null) return null;
        if (v instanceof byte[]) return renderBytes((byte[]) v);
        if (v instanceof String) return v;
        if (v instanceof BigDecimal) return "BigDecimal:" + ((BigDecimal) v).toPlainString();
        return v.getClass().getSimpleName() + ":" + v;
    }

    static Map<String, Object> error(SQLException e) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("class", e.getClass().getSimpleName());
        m.put("code", e.getErrorCode());
        m.put("sqlstate", e.getSQLState());
        // Connector/J prefixes the connection id: differs run to run by nature.
        String msg = e.getMessage() == null ? null : e.getMessage().replaceAll("\\(conn=\\d+\\) ", "");
        m.put("message", msg);
        return m;
    }

    static void putResultSet(Map<String, Object> r, ResultSet rs) throws Exception {
        ResultSetMetaData md = rs.getMetaData();
        int n = md.getColumnCount();
        List<Object> cols = new ArrayList<>();
        for (int i = 1; i <= n; i++) {
            Map<String, Object> c = new LinkedHashMap<>();
            c.put("label", md.getColumnLabel(i));
            c.put("name", md.getColumnName(i));
            c.put("table", md.getTableName(i));
            c.put("type", md.getColumnTypeName(i));
            c.put("jdbc_type", md.getColumnType(i));
            c.put("precision", md.getPrecision(i));
            c.put("scale", md.getScale(i));
            c.put("nullable", md.isNullable(i));
            c.put("auto_increment", md.isAutoIncrement(i));
            c.put("class", md.getColumnClassName(i));
            cols.add(c);
        }
        List<Object> rows = new ArrayList<>();
        while (rs.next()) {
            List<Object> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) row.add(render(rs.getObject(i)));
            rows.add(row);
        }
        r.put("columns", cols);
        r.put("rows", rows);
    }

    static List<Object> keys(Statement st) throws Exception {
        List<Object> ks = new ArrayList<>();
        try (ResultSet rs = st.getGeneratedKeys()) {
            while (rs.next()) ks.add(rs.getLong(1));
        }
        return ks;
    }

    interface Body {
        void run(Map<String, Object> r) throws Exception;
    }

    static void step(String name, Body body) throws Exception {
        Map<String, Object> r = rec(name);
        try {
            body.run(r);
        } catch (SQLException e) {
            r.put("error", error(e));
        }
        emit(r);
    }

    /** A plain Statement (text protocol). */
    static void text(Connection c, String name, String sql) throws Exception {
        step(name, r -> {
            try (Statement st = c.createStatement()) {
                boolean isRs = st.execute(sql, Statement.RETURN_GENERATED_KEYS);
                if (isRs) {
                    try (ResultSet rs = st.getResultSet()) { putResultSet(r, rs); }
                } else {
                    r.put("affected", st.getUpdateCount());
                    r.put("generated_keys", keys(st));
                }
            }
        });
    }

    interface Binder {
        void bind(PreparedStatement ps) throws Exception;
    }

    /** A server-side prepared statement (binary protocol). */
    static void prepared(Connection c, String name, String sql, Binder binder) throws Exception {
        step(name, r -> {
            try (PreparedStatement ps = c.prepareStatement(sql, Statement.RETURN_GENERATED_KEYS)) {
                binder.bind(ps);
                boolean isRs = ps.execute();
                if (isRs) {
                    try (ResultSet rs = ps.getResultSet()) { putResultSet(r, rs); }
                } else {
                    r.put("affected", ps.getUpdateCount());
                    r.put("generated_keys", keys(ps));
                }
            }
        });
    }

    static String arg(String[] a, int i, String env, String dflt) {
        if (a.length > i) return a[i];
        String v = System.getenv(env);
        return v != null ? v : dflt;
    }

    public static void main(String[] a) throws Exception {
        TimeZone.setDefault(TimeZone.getTimeZone("UTC"));
        out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        String host = arg(a, 0, "SG_HOST", "127.0.0.1");
        String port = arg(a, 1, "SG_PORT", "13306");
        String user = arg(a, 2, "SG_USER", "root");
        String password = arg(a, 3, "SG_PASSWORD", "");
        String db = arg(a, 4, "SG_DATABASE", "ds0");
        String url = "jdbc:mariadb://" + host + ":" + port + "/" + db + "?useServerPrepStmts=true";
        // SG_TLS_CA: TLS, verifying the server's certificate and name
        // (Connector/J 3's sslMode=verify-full; 2.x's useSsl with its
        // default host name check).
        String ca = System.getenv("SG_TLS_CA");
        if (ca != null && !ca.isEmpty()) {
            url += "&sslMode=verify-full&useSsl=true&serverSslCert=" + ca;
        }

        try (Connection c = DriverManager.getConnection(url, user, password)) {
            String t = TABLE;
            String cols = "id, name, qty, price, ratio, day, created, created6, data, note";
            try (Statement st = c.createStatement()) {
                st.execute("DROP TABLE IF EXISTS " + t); // leftovers of an earlier run; not in the transcript
            }
            text(c, "drop_table", "DROP TABLE IF EXISTS " + t);
            text(c, "create_table", "CREATE TABLE " + t + " ("
                    + " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
                    + " name VARCHAR(64) NOT NULL,"
                    + " qty INT NULL,"
                    + " price DECIMAL(20,6) NULL,"
                    + " ratio DOUBLE NULL,"
                    + " day DATE NULL,"
                    + " created DATETIME NULL,"
                    + " created6 DATETIME(6) NULL,"
                    + " data MEDIUMBLOB NULL,"
                    + " note TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,"
                    + " UNIQUE KEY uk_name (name)"
                    + ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
            step("is_valid", r -> r.put("valid", c.isValid(5)));
            step("set_catalog", r -> { c.setCatalog(db); r.put("ok", true); });
            text(c, "insert_literal", "INSERT INTO " + t + " (name, qty, price, ratio, day, created, created6, data, note) VALUES "
                    + "('alpha', 1, 12.5, 0.25, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05.123456', X'00FF01', 'plain ascii')");
            text(c, "insert_multi", "INSERT INTO " + t + " (name, qty, price, ratio) VALUES ('beta', 2, -0.000001, -1.5), ('gamma', 3, 0, 1e100)");
            text(c, "select_all_text", "SELECT " + cols + " FROM " + t + " ORDER BY id");
            prepared(c, "select_all", "SELECT " + cols + " FROM " + t + " ORDER BY id", ps -> {});
            prepared(c, "update", "UPDATE " + t + " SET qty = qty + ? WHERE id <= ?", ps -> { ps.setInt(1, 10); ps.setLong(2, 2); });
            prepared(c, "update_nochange", "UPDATE " + t + " SET qty = qty WHERE id = ?", ps -> ps.setInt(1, 1));

            String ins = "INSERT INTO " + t + " (name, qty, price, ratio, day, created, created6, data, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
            prepared(c, "prepared_insert_types", ins, ps -> {
                ps.setString(1, "prep-types");
                ps.setInt(2, 42);
                ps.setBigDecimal(3, new BigDecimal("12345678901234.123456"));
                ps.setDouble(4, 3.25);
                ps.setDate(5, Date.valueOf("2024-12-31"));
                ps.setTimestamp(6, Timestamp.valueOf("2024-02-29 23:59:59"));
                ps.setTimestamp(7, Timestamp.valueOf("2024-02-29 23:59:59.654321"));
                ps.setBytes(8, SMALL_BLOB);
                ps.setString(9, UNICODE_TEXT);
            });
            prepared(c, "prepared_insert_nulls", ins, ps -> {
                ps.setString(1, "prep-nulls");
                ps.setNull(2, Types.INTEGER);
                ps.setNull(3, Types.DECIMAL);
                ps.setNull(4, Types.DOUBLE);
                ps.setNull(5, Types.DATE);
                ps.setNull(6, Types.TIMESTAMP);
                ps.setNull(7, Types.TIMESTAMP);
                ps.setNull(8, Types.BLOB);
                ps.setNull(9, Types.VARCHAR);
            });
            prepared(c, "prepared_insert_bigblob", ins, ps -> {
                ps.setString(1, "prep-bigblob");
                ps.setInt(2, 7);
                ps.setBigDecimal(3, new BigDecimal("-99999999999999.999999"));
                ps.setDouble(4, 0.5);
                ps.setNull(5, Types.DATE);
                ps.setNull(6, Types.TIMESTAMP);
                ps.setNull(7, Types.TIMESTAMP);
                ps.setBytes(8, BIG_BLOB);
                ps.setString(9, "big");
            });
            // a stream parameter: Connector/J may send it with COM_STMT_SEND_LONG_DATA
            prepared(c, "prepared_update_stream", "UPDATE " + t + " SET data = ? WHERE name = ?", ps -> {
                ps.setBinaryStream(1, new ByteArrayInputStream(STREAM_BLOB), STREAM_BLOB.length);
                ps.setString(2, "gamma");
            });
            prepared(c, "prepared_select", "SELECT id, name, qty, note FROM " + t + " WHERE id >= ? AND name <> ? ORDER BY id",
                    ps -> { ps.setLong(1, 2); ps.setString(2, "gamma"); });
            prepared(c, "prepared_select_null", "SELECT id, name FROM " + t + " WHERE qty <=> ? ORDER BY id",
                    ps -> ps.setNull(1, Types.INTEGER));
            prepared(c, "prepared_select_unicode", "SELECT id, note, CHAR_LENGTH(note), LENGTH(note), HEX(note) FROM " + t + " WHERE note = ?",
                    ps -> ps.setString(1, UNICODE_TEXT));
            prepared(c, "prepared_select_blob", "SELECT id, data, HEX(data) FROM " + t + " WHERE data = ?",
                    ps -> ps.setBytes(1, SMALL_BLOB));
            prepared(c, "select_bigblob", "SELECT id, LENGTH(data), SHA2(data, 256), data FROM " + t + " WHERE name IN (?, ?) ORDER BY id",
                    ps -> { ps.setString(1, "prep-bigblob"); ps.setString(2, "gamma"); });
            prepared(c, "select_typed", "SELECT price, created6, CAST(created6 AS CHAR), price * 2, DATE_FORMAT(created, '%Y/%m/%d') FROM " + t + " WHERE name = ?",
                    ps -> ps.setString(1, "prep-types"));
            step("getters", r -> {
                try (PreparedStatement ps = c.prepareStatement("SELECT price, created, created6, day, data, note FROM " + t + " WHERE name = ?")) {
                    ps.setString(1, "prep-types");
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        r.put("price", rs.getBigDecimal(1).toPlainString());
                        r.put("created", rs.getTimestamp(2).toString());
                        r.put("created6", rs.getTimestamp(3).toString());
                        r.put("created6_nanos", rs.getTimestamp(3).getNanos());
                        r.put("created6_string", rs.getString(3));
                        r.put("day", rs.getDate(4).toString());
                        r.put("data", renderBytes(rs.getBytes(5)));
                        r.put("note", rs.getString(6));
                    }
                }
            });

            // transaction rolled back: the row is gone
            step("txn_rollback_begin", r -> { c.setAutoCommit(false); r.put("ok", true); });
            prepared(c, "txn_rollback_insert", "INSERT INTO " + t + " (name, qty) VALUES (?, ?)", ps -> { ps.setString(1, "txn-rollback"); ps.setInt(2, 1); });
            prepared(c, "txn_rollback_visible_inside", "SELECT COUNT(*) FROM " + t + " WHERE name = ?", ps -> ps.setString(1, "txn-rollback"));
            step("txn_rollback", r -> { c.rollback(); c.setAutoCommit(true); r.put("ok", true); });
            prepared(c, "txn_rollback_gone", "SELECT COUNT(*) FROM " + t + " WHERE name = ?", ps -> ps.setString(1, "txn-rollback"));
            // transaction committed: the row is there
            step("txn_commit_begin", r -> { c.setAutoCommit(false); r.put("ok", true); });
            prepared(c, "txn_commit_insert", "INSERT INTO " + t + " (name, qty) VALUES (?, ?)", ps -> { ps.setString(1, "txn-commit"); ps.setInt(2, 2); });
            step("txn_commit", r -> { c.commit(); c.setAutoCommit(true); r.put("ok", true); });
            prepared(c, "txn_commit_there", "SELECT id, name, qty FROM " + t + " WHERE name = ?", ps -> ps.setString(1, "txn-commit"));

            // errors must not break the session
            text(c, "error_syntax", "SELEC 1");
            text(c, "after_syntax_error", "SELECT 1 AS ok");
            prepared(c, "error_syntax_prepared", "SELEC ?", ps -> ps.setInt(1, 1));
            prepared(c, "after_syntax_error_prepared", "SELECT ? AS ok", ps -> ps.setInt(1, 2));
            prepared(c, "error_duplicate", "INSERT INTO " + t + " (name) VALUES (?)", ps -> ps.setString(1, "alpha"));
            prepared(c, "after_duplicate", "SELECT COUNT(*) AS n FROM " + t, ps -> {});
            text(c, "error_unknown_column", "SELECT no_such_column FROM " + t);
            text(c, "after_unknown_column", "SELECT 3 AS ok");

            prepared(c, "select_final", "SELECT " + cols + " FROM " + t + " ORDER BY id", ps -> {});

            // executeBatch last: against a server offering MariaDB's bulk
            // operations Connector/J sends COM_STMT_BULK_EXECUTE, otherwise one
            // COM_STMT_EXECUTE per row; update counts and auto-increment gaps
            // may differ between the two, the rows may not.
            step("prepared_batch", r -> {
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + t + " (name, qty, note) VALUES (?, ?, ?)")) {
                    for (int i = 1; i <= 3; i++) {
                        ps.setString(1, "batch-" + i);
                        ps.setInt(2, i * 100);
                        if (i == 2) ps.setNull(3, Types.VARCHAR); else ps.setString(3, "漢字 " + i);
                        ps.addBatch();
                    }
                    r.put("statements", ps.executeBatch().length);
                }
            });
            text(c, "after_batch", "SELECT name, qty, note FROM " + t + " WHERE name LIKE 'batch-%' ORDER BY name");
            emit(rec("done"));
        }
    }
}
