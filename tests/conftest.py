"""Fixtures shared by several test modules: a throwaway PostgreSQL server (``tests/pg.py``) and HAProxy
(``tests/haproxy.py``)."""

pytest_plugins = ["tests.pg"]  # tests/haproxy.py has no fixtures: tests use its HAProxy class
