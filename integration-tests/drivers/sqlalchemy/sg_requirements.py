"""What MariaDB 10.11 (the sandbox's servers) supports, for SQLAlchemy's
dialect compliance suite.

SuiteRequirements leaves every optional feature closed; this opens those
MariaDB has, so that the suite exercises them. The same class serves the run
straight at MariaDB and the run through ShardGate: a feature is asked of
ShardGate exactly when MariaDB has it. Where MariaDB itself does not pass a
test of a feature it has (a reflection detail the MySQL dialect reads
differently, say), the feature stays closed with the reason.
"""

from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements

open_ = exclusions.open
closed = exclusions.closed


class MariaDBRequirements(SuiteRequirements):
    # ------------------------------------------------------------ DDL

    @property
    def table_ddl_if_exists(self):
        return open_()

    @property
    def index_ddl_if_exists(self):
        return open_()

    @property
    def unbounded_varchar(self):
        """VARCHAR needs a length in MariaDB."""
        return closed()

    @property
    def unicode_ddl(self):
        return open_()

    @property
    def nvarchar_types(self):
        return open_()

    @property
    def server_defaults(self):
        return open_()

    @property
    def expression_server_defaults(self):
        """DEFAULT (expression), MariaDB 10.2.1 on."""
        return open_()

    @property
    def computed_columns(self):
        return open_()

    @property
    def computed_columns_stored(self):
        return open_()

    @property
    def computed_columns_virtual(self):
        return open_()

    @property
    def computed_columns_reflect_persisted(self):
        return open_()

    @property
    def schemas(self):
        """Databases `test_schema` and `test_schema_2` beside the default one."""
        return open_()

    @property
    def schema_create_delete(self):
        """CREATE SCHEMA / DROP SCHEMA (databases in MariaDB)."""
        return open_()

    @property
    def views(self):
        return open_()

    # ------------------------------------------------------------ reflection

    @property
    def foreign_keys_reflect_as_index(self):
        """InnoDB adds an index for each foreign key."""
        return open_()

    @property
    def unique_index_reflect_as_unique_constraints(self):
        return open_()

    @property
    def unique_constraints_reflect_as_index(self):
        return open_()

    @property
    def cross_schema_fk_reflection(self):
        return open_()

    @property
    def foreign_key_constraint_name_reflection(self):
        """MariaDB 10.5 on keeps the name given in CONSTRAINT <name>."""
        return open_()

    @property
    def foreign_key_constraint_option_reflection_ondelete(self):
        return open_()

    @property
    def fk_constraint_option_reflection_ondelete_noaction(self):
        return open_()

    @property
    def foreign_key_constraint_option_reflection_onupdate(self):
        return open_()

    @property
    def comment_reflection(self):
        return open_()

    @property
    def column_collation_reflection(self):
        return open_()

    @property
    def indexes_check_column_order(self):
        return open_()

    @property
    def check_constraint_reflection(self):
        return open_()

    @property
    def reflect_table_options(self):
        """mysql_engine, mysql_charset... in Table.dialect_options."""
        return open_()

    @property
    def has_temp_table(self):
        return open_()

    # ------------------------------------------------------------ SQL

    @property
    def boolean_col_expressions(self):
        return open_()

    @property
    def intersect(self):
        """INTERSECT, MariaDB 10.3 on."""
        return open_()

    @property
    def except_(self):
        """EXCEPT, MariaDB 10.3 on."""
        return open_()

    @property
    def window_functions(self):
        return open_()

    @property
    def ctes(self):
        return open_()

    @property
    def ctes_with_values(self):
        return open_()

    @property
    def tuple_in(self):
        return open_()

    @property
    def update_from(self):
        return open_()

    @property
    def delete_from(self):
        return open_()

    @property
    def fetch_first(self):
        """OFFSET ... FETCH FIRST n ROWS ONLY, MariaDB 10.6 on."""
        return open_()

    @property
    def fetch_ties(self):
        """FETCH ... WITH TIES, MariaDB 10.6 on."""
        return open_()

    @property
    def fetch_offset_with_options(self):
        return open_()

    @property
    def fetch_no_order_by(self):
        return open_()

    @property
    def mod_operator_as_percent_sign(self):
        return open_()

    @property
    def order_by_label_with_expression(self):
        return open_()

    @property
    def regexp_match(self):
        return open_()

    @property
    def regexp_replace(self):
        return open_()

    @property
    def supports_bitwise_or(self):
        return open_()

    @property
    def supports_bitwise_and(self):
        return open_()

    @property
    def supports_bitwise_xor(self):
        return open_()

    @property
    def supports_bitwise_shift(self):
        return open_()

    # ------------------------------------------------------------ inserts

    @property
    def emulated_lastrowid(self):
        return open_()

    @property
    def emulated_lastrowid_even_with_sequences(self):
        return open_()

    @property
    def dbapi_lastrowid(self):
        return open_()

    # ------------------------------------------------------------ types

    @property
    def json_type(self):
        """JSON (an alias of LONGTEXT with a JSON_VALID check)."""
        return open_()

    @property
    def uuid_data_type(self):
        """UUID, MariaDB 10.7 on."""
        return open_()

    @property
    def datetime_literals(self):
        return open_()

    @property
    def datetime_historic(self):
        return open_()

    @property
    def date_historic(self):
        return open_()

    @property
    def precision_numerics_many_significant_digits(self):
        return open_()

    @property
    def precision_numerics_retains_significant_digits(self):
        return open_()

    # ------------------------------------------------------------ transactions

    @property
    def savepoints(self):
        return open_()

    @property
    def isolation_level(self):
        return open_()

    @property
    def autocommit(self):
        return open_()

    def get_isolation_levels(self, config):
        return {
            "default": "REPEATABLE READ",
            "supported": [
                "SERIALIZABLE",
                "READ UNCOMMITTED",
                "READ COMMITTED",
                "REPEATABLE READ",
                "AUTOCOMMIT",
            ],
        }

    # ------------------------------------------------------------ what MariaDB does not do

    # Left closed (SuiteRequirements' default) as their tests fail straight
    # at MariaDB 10.11 with this SQLAlchemy: reflects_pk_names (a primary key
    # is named PRIMARY), temp_table_names (not implemented by the MySQL
    # dialect), fk_constraint_option_reflection_on{delete,update}_restrict
    # (SHOW CREATE TABLE leaves RESTRICT out), table_value_constructor,
    # fetch_expression, repeated_column_foreign_keys,
    # json_deserializer_binary, float_or_double_precision_behaves_generically.

    @property
    def skip_autocommit_rollback(self):
        """The dialect reads the connection's autocommit and skips the
        rollback when it is on (engine option skip_autocommit_rollback)."""
        return open_()

    @property
    def ctes_with_update_delete(self):
        """WITH ... UPDATE/DELETE: MariaDB has CTEs in SELECT only."""
        return closed()

    @property
    def inline_check_constraint_reflection(self):
        """A named column-level CHECK is a syntax error in MariaDB."""
        return closed()

    @property
    def comment_reflection_full_unicode(self):
        """Comments are utf8mb3: characters beyond the BMP come back as '?'."""
        return closed()

    @property
    def supports_bitwise_not(self):
        """~x is an unsigned 64-bit value in MariaDB, not a signed one."""
        return closed()

    @property
    def sql_expression_limit_offset(self):
        """LIMIT and OFFSET take literals or placeholders, not expressions."""
        return closed()

    @property
    def datetime_microseconds(self):
        """The MySQL dialect's DATETIME has no fractional seconds (fsp 0)."""
        return closed()

    @property
    def time_microseconds(self):
        """The MySQL dialect's TIME has no fractional seconds (fsp 0)."""
        return closed()

    @property
    def date_implicit_bound(self):
        """SELECT of a bound date comes back as a string (untyped parameter)."""
        return closed()

    @property
    def time_implicit_bound(self):
        """SELECT of a bound time comes back as a string (untyped parameter)."""
        return closed()

    @property
    def datetime_implicit_bound(self):
        """SELECT of a bound datetime comes back as a string (untyped parameter)."""
        return closed()

    @property
    def precision_generic_float_type(self):
        """FLOAT(precision) does not keep the scale the test asks for."""
        return closed()
