"""The short chaos soak (~150 uploads, ~2-3 min): see tests/soak/harness.py.
The long one: `SOAK_UPLOADS=1000 make soak`."""

from __future__ import annotations

import os

import pytest

from tests.helpers.evalset import DEV, require_dev_set
from tests.soak.harness import NoReference, SoakConfig, Truth, reference_blurs, report_md, run

pytestmark = [pytest.mark.slow, pytest.mark.soak]


def test_short_chaos_soak_loses_nothing_and_leaks_nothing(tmp_path):
    require_dev_set()
    cfg = SoakConfig(uploads=int(os.environ.get("SOAK_SHORT_UPLOADS", "150")))
    result = run(cfg, tmp_path)
    print(report_md(result, "short soak in the test suite", f"{os.cpu_count()} cores"))
    n = result.numbers
    # The run must really have been hostile, or passing proves nothing.
    assert n["invalid_kinds"] >= 25
    assert n["chaos"].get("SIGKILL", 0) >= 3
    assert (
        sum(
            v
            for k, v in n["faults_injected"].items()
            if k in ("error_before", "error_after", "slow", "reset_before", "reset_after")
        )
        >= 20
    )
    assert n["faults_injected"]["rekognition_throttles"] >= 1
    assert result.ok, "\n".join(result.violations)


def test_a_reference_that_cannot_be_made_stops_the_soak():
    """Without its reference a photo's outputs would be judged against nothing: the harness raises at once."""
    require_dev_set()
    truth = Truth(DEV)
    with pytest.raises(NoReference, match=r"no reference blur of not-in-the-set\.jpg"):
        reference_blurs(truth, {"not-in-the-set.jpg"}, {"DETECTOR": "local"})
    assert truth.reference == {}
