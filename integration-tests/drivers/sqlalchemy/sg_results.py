"""A pytest plugin writing one JSON object per test, one a line, to the file
named by SG_SQLA_RESULTS: its id (without the backend in the class name),
its outcome (passed, failed, error, skipped, xfailed, xpassed) and, for a
failure or a skip, the message and the end of the traceback.

integration-tests/tests/e2e/peer_sqlalchemy.rs compares these files of the run
straight at MariaDB and of the run through ShardGate.
"""

import json
import os
import re

# SQLAlchemy's plugin names each backend test class after the database it ran
# on (`DateTest_mariadb+pymysql_10_11_19_0`): the server version differs
# between MariaDB and ShardGate, the test does not.
_BACKEND_SUFFIX = re.compile(r"_(?:mysql|mariadb)\+\w+?_[0-9_]+(?=::|$)")


def test_key(nodeid):
    """The test's id without the backend and version in its class name."""
    return _BACKEND_SUFFIX.sub("", nodeid)


test_key.__test__ = False

_tests = {}


def _message(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2])  # a skip: (file, line, reason)
    lines = str(report.longrepr or "").strip().splitlines()
    return lines[-1] if lines else ""


def pytest_runtest_logreport(report):
    entry = _tests.setdefault(
        report.nodeid,
        {
            "id": test_key(report.nodeid),
            "nodeid": report.nodeid,
            "outcome": None,
            "message": "",
            "text": "",
            "seconds": 0.0,
        },
    )
    entry["seconds"] += getattr(report, "duration", 0.0) or 0.0
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if xfail:
            entry["outcome"] = "xfailed" if report.skipped else "xpassed"
        else:
            entry["outcome"] = report.outcome
    elif report.failed:
        # setup or teardown: an error, whatever the call did
        entry["outcome"] = "error"
    elif report.skipped and entry["outcome"] is None:
        entry["outcome"] = "xfailed" if xfail else "skipped"
    if report.failed or (report.skipped and not entry["message"]):
        entry["message"] = _message(report)
        entry["text"] = report.longreprtext[-6000:]


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("SG_SQLA_RESULTS")
    if not path:
        return
    with open(path, "w", encoding="utf-8") as out:
        for entry in _tests.values():
            if entry["outcome"] is None:
                entry["outcome"] = "error"
            entry["seconds"] = round(entry["seconds"], 3)
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")
