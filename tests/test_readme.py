"""The README's Python snippets are code a user can paste: each one runs and builds an app."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_its_agent_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet-{i}" for i in range(len(SNIPPETS))])
def test_a_readme_snippet_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # create_app's default voice.db goes here
    namespace: dict = {"__name__": "readme_snippet"}
    exec(compile(code, "README.md", "exec"), namespace)
    assert isinstance(namespace.get("app"), FastAPI)
