"""Where the internal face evaluation set lives, and what a test does when it is not there.

../shared/faces/dev is read in place by tests and benchmarks only. A user's own clone has no ../shared: the
tests that need it are skipped with the reason. CI has it (CI=true): there a missing set is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEV = Path(__file__).resolve().parents[2].parent / "shared" / "faces" / "dev"


def require_dev_set() -> Path:
    if (DEV / "annotations.json").is_file():
        return DEV
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the face evaluation set is missing at {DEV}: CI must have ../shared")
    pytest.skip(f"the internal face evaluation set is not here ({DEV}); it exists only beside the project's CI")
