"""Quality on ../shared/faces/dev with default settings: the bar from the blurring issue.

The data set is internal-evaluation material read in place; it is never copied. CI has it: a missing set fails
there, and is skipped with the reason on a user's own clone (tests/helpers/evalset.py).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers.evalset import DEV, require_dev_set
from tests.quality.measure import Tally, displayed_grey
from worker.blur import blur_photo

pytestmark = [pytest.mark.quality, pytest.mark.slow]


@pytest.fixture(scope="module")
def dev_results(settings_and_detector):
    require_dev_set()
    settings, detector = settings_and_detector
    annotations = json.loads((DEV / "annotations.json").read_text())

    def run(entry):
        data = (DEV / entry["file"]).read_bytes()
        return entry, data, blur_photo(data, detector, settings)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(run, annotations))


def test_every_dev_photo_gets_an_output_of_the_same_size(dev_results):
    for entry, _data, result in dev_results:
        frame = entry.get("oriented") or entry
        assert (result.width, result.height) == (frame["width"], frame["height"]), entry["file"]
        assert displayed_grey(result.data).shape == (frame["height"], frame["width"])


def test_faces_protected_and_collateral_within_bounds(dev_results):
    tally = Tally()
    for entry, data, result in dev_results:
        frame = entry.get("oriented") or entry
        attrs = entry.get("face_attrs") or [{}] * len(frame["faces"])
        counted = [b for b, a in zip(frame["faces"], attrs, strict=True) if not a.get("tiny") and not a.get("invalid")]
        keep_out = list(frame["faces"]) + list(frame.get("ignore", []))
        tally.add(displayed_grey(data), displayed_grey(result.data), counted, keep_out)
    protected = tally.protected / tally.faces
    collateral = tally.altered / tally.tiles
    negatives = tally.negative_altered / max(tally.negative_tiles, 1)
    print(
        f"protected {tally.protected}/{tally.faces} = {protected:.4f}, collateral {collateral:.4f}, "
        f"negatives collateral {negatives:.4f}"
    )
    assert tally.faces >= 200  # the set has 218 countable faces; fewer means the measure broke
    assert protected >= 0.95  # the issue asks 0.93; we measure ~0.977 and guard against regressions
    assert collateral <= 0.02
    assert negatives <= 0.01
