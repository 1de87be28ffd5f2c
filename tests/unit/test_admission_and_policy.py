"""Memory admission (pure threading), the ICC decision, resource exhaustion being transient, and the start-up check
of the whole ImageMagick policy (a policy that only denies MVG is not ours)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import wand.exceptions
from helpers import icc as test_icc

from worker.admission import BudgetTooSmall, MemoryBudget, check_fits, default_budget, memory_limit, photo_bytes
from worker.errors import ResourcesExhausted, TransientError
from worker.imaging import icc
from worker.imaging.magick import magick_errors

ROOT = Path(__file__).resolve().parents[2]


def test_reservations_never_exceed_the_budget_and_are_served_in_order():
    budget = MemoryBudget(100)
    peak, order, lock = [0], [], threading.Lock()
    gate = threading.Event()

    def photo(name: str, size: int) -> None:
        with budget.reserve(size):
            with lock:
                order.append(name)
                peak[0] = max(peak[0], budget.used)
            gate.wait(5)

    first = threading.Thread(target=photo, args=("big-1", 80))
    first.start()
    while budget.used != 80:
        pass
    later = [threading.Thread(target=photo, args=(n, s)) for n, s in (("big-2", 90), ("small", 10))]
    for t in later:
        t.start()
        while len(budget._waiting) < later.index(t) + 1:  # queued in this order
            pass
    gate.set()
    for t in (first, *later):
        t.join(10)
    assert order == ["big-1", "big-2", "small"]  # the small one fitted at once but waited its turn
    assert peak[0] <= 100
    assert budget.used == 0


def test_the_largest_allowed_photo_must_fit_the_budget():
    need = photo_bytes(50_000_000, 1, 50 * 2**20)
    check_fits(need, 50_000_000, 50 * 2**20)
    with pytest.raises(BudgetTooSmall, match="MAX_PIXELS"):
        check_fits(need - 1, 50_000_000, 50 * 2**20)
    # A 2 GiB Fargate task holds one photo of the default limits.
    assert default_budget(2 * 2**30) >= need


def test_memory_limit_reads_cgroup_v2_v1_or_ram(tmp_path):
    (tmp_path / "memory.max").write_text("2147483648\n")
    assert memory_limit(tmp_path, Path("/proc/meminfo")) == 2**31
    (tmp_path / "memory.max").write_text("max\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1024 kB\n")
    assert memory_limit(tmp_path, meminfo) == 1024 * 1024
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("1073741824\n")
    assert memory_limit(tmp_path, meminfo) == 2**30


@pytest.mark.parametrize("exc", [wand.exceptions.ResourceLimitError, wand.exceptions.CacheError])
def test_running_out_of_imagemagick_resources_is_transient(exc):
    with pytest.raises(ResourcesExhausted) as caught, magick_errors("decoding"):
        raise exc("cache resources exhausted")
    assert isinstance(caught.value, TransientError)


def test_profiles_are_known_only_when_they_render_like_srgb_or_p3():
    assert icc.colour_space(test_icc.display_p3()) == "p3"
    assert icc.colour_space(icc.canonical("p3")) == "p3"
    assert icc.colour_space(test_icc.adobe_rgb()) is None
    srgb = test_icc.rgb_profile(
        "sRGB", ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), test_icc.curv(test_icc.srgb_table())
    )
    assert icc.colour_space(srgb) == "srgb"
    # The same profile with a tone curve that scrambles levels: a viewer shows something else than the pixels.
    scrambled = test_icc.srgb_table()[::-1].copy()
    evil = test_icc.rgb_profile("sRGB", ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), test_icc.curv(scrambled))
    assert icc.colour_space(evil) is None
    assert icc.colour_space(b"garbage" * 40) is None


def test_a_policy_that_only_denies_mvg_is_refused_at_start(tmp_path):
    (tmp_path / "policy.xml").write_text('<policymap><policy domain="coder" rights="none" pattern="MVG" /></policymap>')
    env = {**os.environ, "MAGICK_CONFIGURE_PATH": str(tmp_path), "QUEUE_URL": ""}
    code = (
        "from worker.config import Settings\n"
        "from worker.runtime import StartupError, prepare_imaging\n"
        "try:\n    prepare_imaging(Settings().image)\nexcept StartupError as e:\n    print('REFUSED', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "REFUSED" in out.stdout, out.stdout + out.stderr
    assert "is not refused" in out.stdout


def test_matrix_profiles_are_converted_like_littlecms_does():
    """The worker's own conversion (tone curve, matrix, P3 curve) against LittleCMS through Pillow."""
    import io

    import numpy as np
    from PIL import Image as PILImage
    from PIL import ImageCms

    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for profile in (test_icc.adobe_rgb(), test_icc.display_p3()):
        ours = icc.to_p3(rgb, icc.matrix_trc(profile))
        lcms = ImageCms.buildTransform(
            ImageCms.ImageCmsProfile(io.BytesIO(profile)),
            ImageCms.ImageCmsProfile(io.BytesIO(icc.canonical("p3"))),
            "RGB",
            "RGB",
        )
        expected = np.asarray(ImageCms.applyTransform(PILImage.fromarray(rgb), lcms))
        assert np.abs(ours.astype(int) - expected).max() <= 1
    assert icc.matrix_trc(b"not a profile" * 20) is None
