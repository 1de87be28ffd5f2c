"""docs/architecture.md matches the code: every module it names exists, and every production module is named."""

from __future__ import annotations

import ast
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


def test_detectors_never_import_the_imaging_layer():
    """Detectors see Frames only: what they look at and what they send away (Frame.jpeg) is made by imaging."""
    for path in (ROOT / "worker" / "detect").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            imaging = [n for n in names if n.startswith("worker.imaging")]
            assert not imaging, f"{path.relative_to(ROOT)} imports {imaging}"


def test_importing_the_worker_changes_nothing_in_the_process(tmp_path):
    """No import-time side effects: importing every production module sets no environment variable and creates
    no temporary directory; the entry point does that (worker/process.py)."""
    import subprocess
    import sys

    modules = sorted(
        ".".join(("worker", *p.relative_to(ROOT / "worker").with_suffix("").parts))
        for p in (ROOT / "worker").rglob("*.py")
        if "dev" not in p.parts and p.name not in ("__main__.py", "__init__.py")
    )
    code = (
        "import os, tempfile, importlib, pathlib\n"
        "env = dict(os.environ); tmp = set(pathlib.Path(tempfile.gettempdir()).iterdir())\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(set(os.environ.items()) ^ set(env.items())))\n"
        "print(sorted(str(p) for p in set(pathlib.Path(tempfile.gettempdir()).iterdir()) - tmp))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("MAGICK_", "OPENBLAS_"))}
    # A temporary folder of its own: other processes on the machine create and remove theirs in the shared one.
    env["TMPDIR"] = str(tmp_path)
    env["ORT_DISABLE_TELEMETRY"] = "1"  # ONNX Runtime's own files, which process.prepare turns off (test_process.py)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "[]"], out.stdout
