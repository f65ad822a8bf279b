"""Settings of the Django program run by tests/e2e/peer_django.rs (see run.py).

Django's defaults wherever they are not the point: the MySQL backend with no
OPTIONS (so Django picks its own connection charset, utf8mb4, and isolation
level, READ COMMITTED), no CONN_MAX_AGE, ATOMIC_REQUESTS off (autocommit).
Where to connect comes from the environment, which run.py sets from its
arguments.
"""

import os

SECRET_KEY = "shardgate-integration-test"
# connection.queries (the SQL of each step goes to the detail file)
DEBUG = True
INSTALLED_APPS = ["django.contrib.contenttypes", "sgapp"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.mysql",
        "HOST": os.environ.get("SG_DJANGO_HOST", "127.0.0.1"),
        "PORT": os.environ.get("SG_DJANGO_PORT", "3306"),
        "USER": os.environ.get("SG_DJANGO_USER", "root"),
        "PASSWORD": os.environ.get("SG_DJANGO_PASSWORD", ""),
        "NAME": os.environ.get("SG_DJANGO_DATABASE", "django_ref"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# startproject's choices: aware datetimes, stored as UTC
USE_TZ = True
TIME_ZONE = "UTC"
