"""Small faces in big photos: the dev set's WIDER photos tiled 2x2, 3x3 and 4x4 at their own pixel size (5-26 MP).

A face keeps its pixel size however large the photo around it grows, so the protection of the same faces must
not depend on it: per mosaic size, the share protected stays within 0.02 of the same faces blurred in their own
~1 MP photos, and the detail destroyed away from faces stays <= 0.02. Built in memory (tests/helpers/mosaic.py)
from the internal evaluation set, read in place and never written out.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.helpers import mosaic
from tests.helpers.evalset import DEV, require_dev_set
from tests.quality.measure import Tally, displayed_grey
from worker.blur import blur_photo

pytestmark = [pytest.mark.quality, pytest.mark.slow]

SIZES = (2, 3, 4)
PER_SIZE = 2


def _counted(entry: dict[str, Any]) -> list[list[int]]:
    attrs = entry.get("face_attrs") or [{}] * len(entry["faces"])
    return [b for b, a in zip(entry["faces"], attrs, strict=True) if not a.get("tiny") and not a.get("invalid")]


def _tally(entry: dict[str, Any], original: bytes, output: bytes) -> Tally:
    tally = Tally()
    keep_out = list(entry["faces"]) + list(entry.get("ignore", []))
    tally.add(displayed_grey(original), displayed_grey(output), _counted(entry), keep_out)
    return tally


@pytest.fixture(scope="module")
def tallies(settings_and_detector) -> tuple[dict[str, Tally], list[tuple[int, dict[str, Any], Tally]]]:
    """Each cell photo's tally blurred on its own, and each mosaic's tally."""
    require_dev_set()
    settings, detector = settings_and_detector
    annotations = {e["file"]: e for e in json.loads((DEV / "annotations.json").read_text())}
    built = mosaic.mosaics(DEV, SIZES, PER_SIZE)
    cells = sorted({name for _n, _data, entry in built for name in entry["cells"]})

    def alone(name: str) -> tuple[str, Tally]:
        data = (DEV / name).read_bytes()
        return name, _tally(annotations[name], data, blur_photo(data, detector, settings).data)

    def tiled(item: tuple[int, bytes, dict[str, Any]]) -> tuple[int, dict[str, Any], Tally]:
        n, data, entry = item
        result = blur_photo(data, detector, settings)
        assert (result.width, result.height) == (entry["width"], entry["height"])
        return n, entry, _tally(entry, data, result.data)

    with ThreadPoolExecutor(max_workers=2) as pool:
        originals = dict(pool.map(alone, cells))
        mosaics = list(pool.map(tiled, built))
    return originals, mosaics


@pytest.mark.parametrize("n", SIZES)
def test_small_faces_are_protected_whatever_the_photo_size(tallies, n):
    originals, mosaics = tallies
    tiled = [(entry, tally) for size, entry, tally in mosaics if size == n]
    faces = sum(t.faces for _e, t in tiled)
    protected = sum(t.protected for _e, t in tiled) / faces
    # The same faces, counted as often as they appear in the mosaics, each in its own photo.
    alone = [originals[name] for entry, _t in tiled for name in entry["cells"]]
    reference = sum(t.protected for t in alone) / sum(t.faces for t in alone)
    collateral = sum(t.altered for _e, t in tiled) / sum(t.tiles for _e, t in tiled)
    megapixels = [round(e["width"] * e["height"] / 1e6, 1) for e, _t in tiled]
    print(
        f"{n}x{n} {megapixels} MP: protected {protected:.4f} of {faces}, alone {reference:.4f}, "
        f"collateral {collateral:.4f}"
    )
    assert faces >= 150  # two mosaics of cycled crowds: fewer means the mosaics or the measure broke
    assert protected >= reference - 0.02
    assert protected >= 0.95  # the bar for photos the team never saw, held here too
    assert collateral <= 0.02


def _turned(data: bytes, entry: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The mosaic stored upside down with no orientation tag (a scan, a phone that wrote none), boxes turned too."""
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(data)) as im:
        w, h = im.size
        out = BytesIO()
        im.rotate(180).save(out, "JPEG", quality=95)

    def turn(b: list[int]) -> list[int]:
        return [w - b[0] - b[2], h - b[1] - b[3], b[2], b[3]]

    return out.getvalue(), entry | {
        "faces": [turn(b) for b in entry["faces"]],
        "ignore": [turn(b) for b in entry.get("ignore", [])],
    }


def test_small_faces_upside_down_in_a_big_photo_keep_their_own_pyramid(settings_and_detector):
    """Weaker than upright (CenterFace sees upside-down faces only in the turned pass, at stricter thresholds), but
    held: 0.79 with that pass's two finest levels at 0.4; 0.70 with 0.5 on every level of it; ~0.5 with the
    turned pyramid starting at 48 px instead of 24."""
    require_dev_set()
    settings, detector = settings_and_detector
    tallies = []
    for _n, data, entry in mosaic.mosaics(DEV, (3,), PER_SIZE):
        turned, turned_entry = _turned(data, entry)
        tallies.append(_tally(turned_entry, turned, blur_photo(turned, detector, settings).data))
    faces = sum(t.faces for t in tallies)
    protected = sum(t.protected for t in tallies) / faces
    print(f"3x3 upside down: protected {protected:.4f} of {faces}")
    assert faces >= 150
    assert protected >= 0.75
