"""Fixtures shared by several test modules: a throwaway PostgreSQL server per session and a fresh database per test
(``tests/pg.py``)."""

pytest_plugins = ["tests.pg"]
