"""Fixtures shared by several test modules: a throwaway PostgreSQL server per session and a fresh database per test
(``tests/pg.py``), a local OpenAI-compatible server per test (``fake``, ``tests/llm_common.py``)."""

pytest_plugins = ["tests.pg", "tests.llm_common"]
