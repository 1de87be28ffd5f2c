"""docs/architecture.md matches the code: every module it names exists, and every production module is named."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_module_map_names_exactly_the_modules_there_are():
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"^\| `([a-z_/]+(?:\.py|/))` \|", text, flags=re.M))
    for name in named:
        assert (ROOT / "worker" / name).exists(), f"docs/architecture.md names worker/{name}, which does not exist"
    modules = {
        str(p.relative_to(ROOT / "worker"))
        for p in (ROOT / "worker").rglob("*.py")
        if "dev" not in p.relative_to(ROOT / "worker").parts and p.name != "__init__.py"
    }
    modules.add("detect/__init__.py")  # Face, Frame, Detector live there
    missing = sorted(m for m in modules if m not in named)
    assert not missing, f"modules missing from docs/architecture.md: {missing}"


def test_the_data_path_names_real_functions():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for module, function in re.findall(r"([a-z_/]+\.py): ([A-Za-z_]+)", text):
        source = (ROOT / "worker" / module).read_text()
        assert re.search(rf"\b(def|class) {function}\b", source), f"{module} has no {function}"
