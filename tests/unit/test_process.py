"""The entry point's process set-up: ONNX Runtime's telemetry is off before the detector loads.

ONNX Runtime 1.32 on Linux, left to itself, writes a device id under $HOME and a session file in the temp folder
when its first session is made, and may send telemetry events. A privacy service says nothing about its hosts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from worker.detect.model import DEFAULT_MODEL_PATH

ROOT = Path(__file__).resolve().parents[2]

# ONNX Runtime keeps quiet by itself under CI (it looks for these variables, found in its library's strings), so
# both runs drop them: the set-up must be what keeps the worker quiet, and the control must see the files here too.
QUIETING = {
    "ORT_DISABLE_TELEMETRY",
    "ORT_RUNNING_UNIT_TESTS",
    "CI",
    "TF_BUILD",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "CIRCLECI",
    "TRAVIS",
    "JENKINS_URL",
    "CODEBUILD_BUILD_ID",
    "BUILDKITE",
    "TEAMCITY_VERSION",
    "APPVEYOR",
    "BITBUCKET_BUILD_NUMBER",
}

LOAD = (
    "import sys\n"
    "if sys.argv[1] == 'prepared':\n"
    "    from worker import process; process.prepare()\n"
    "import onnxruntime as ort\n"
    "ort.InferenceSession(sys.argv[2], providers=['CPUExecutionProvider'])\n"
)


def _written(tmp_path: Path, mode: str) -> list[str]:
    """What loading the model wrote under a fresh $HOME and temp folder."""
    home, tmp = tmp_path / mode / "home", tmp_path / mode / "tmp"
    home.mkdir(parents=True)
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in QUIETING}
    env |= {"HOME": str(home), "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(home / ".cache")}
    run = subprocess.run(
        [sys.executable, "-c", LOAD, mode, str(DEFAULT_MODEL_PATH)], cwd=ROOT, env=env, capture_output=True, timeout=120
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    return sorted(str(p.relative_to(tmp_path / mode)) for p in (tmp_path / mode).rglob("*") if p.is_file())


def test_the_detector_loads_without_writing_anything_about_the_host(tmp_path):
    assert _written(tmp_path, "prepared") == []


def test_without_the_set_up_onnx_runtime_writes_its_telemetry_files(tmp_path):
    """The control: the check above would see them (if a new ONNX Runtime stops writing them, re-check this)."""
    written = _written(tmp_path, "bare")
    assert any("deviceid" in p for p in written) or any(p.endswith(".ses") for p in written), written
