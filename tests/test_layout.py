"""README's layout names every module of the core, and the views' older import paths
(``pleias_rag.html``, ``plain``, ``ranking``) stay the views themselves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import pleias_rag

ROOT = Path(__file__).resolve().parent.parent


def layout_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Layout\n+```\n(.*?)^```", readme, re.S | re.M)
    assert match, "README has no ## Layout code block"
    return match.group(1)


def core_modules() -> list[str]:
    package = Path(pleias_rag.__file__).parent
    files = [p.name for p in package.glob("*.py") if not p.name.startswith("__")]
    folders = [f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()]
    return sorted(files + folders)


def test_layout_names_every_core_module() -> None:
    words = set(re.findall(r"[\w/]+\.py|\w+/", layout_block()))
    missing = [name for name in core_modules() if name not in words]
    assert not missing, f"README's layout does not list {missing}"


@pytest.mark.parametrize("name", ["html", "plain", "ranking"])
def test_old_view_paths_are_the_views(name: str) -> None:
    import importlib

    old = importlib.import_module(f"pleias_rag.{name}")
    views = [importlib.import_module(f"pleias_rag.views.{m}") for m in (name, "labels")]
    assert old.__all__
    for attr in old.__all__:  # the same objects, not copies that could drift
        assert any(getattr(v, attr, None) is getattr(old, attr) for v in views), attr
