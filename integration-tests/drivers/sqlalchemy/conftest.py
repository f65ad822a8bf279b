"""pytest configuration of SQLAlchemy's dialect compliance suite.

SQLAlchemy's own pytest plugin (sqlalchemy.testing.plugin.pytestplugin)
does the work: it adds --dburi, reads setup.cfg's [sqla_testing] (the
requirements class, sg_requirements.MariaDBRequirements) and turns the
suite's fixtures and requirement markers into pytest tests. The MySQL
dialect's provisioning registers itself when the dialect loads.

sg_results writes every test's outcome to the file SG_SQLA_RESULTS names,
for integration-tests/tests/e2e/peer_sqlalchemy.rs to compare.
"""

import pytest

pytest_plugins = ("sg_results",)

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402,F401,F403
