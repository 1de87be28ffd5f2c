"""Shared fixtures: the worker's start-up (settings, ImageMagick policy and limits, detector), sample photos.

worker.imaging.magick must be imported before anything imports wand: it points ImageMagick at the worker's
policy and a private temp dir, which the library reads once when it loads.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
for _path in (str(ROOT), str(TESTS)):  # `worker` and `helpers` importable however pytest is started
    if _path not in sys.path:
        sys.path.insert(0, _path)

from worker import process  # noqa: E402

process.prepare()  # what the entry point does first: ImageMagick's policy path before anything loads wand
from worker.detect import Face  # noqa: E402


@pytest.fixture(scope="session")
def runtime():
    """(settings, detector) exactly as the worker starts them (policy checked, limits set, model loaded once)."""
    from worker.runtime import start

    return start()


@pytest.fixture(scope="session")
def settings(runtime):
    return runtime[0]


@pytest.fixture(scope="session")
def detector(runtime):
    return runtime[1]


@pytest.fixture(scope="session")
def imaging_settings():
    """Default settings with ImageMagick configured, without loading the detector."""
    from worker.config import Settings
    from worker.runtime import prepare_imaging

    settings = Settings()
    prepare_imaging(settings.image)
    return settings


@pytest.fixture(scope="session")
def skimage_data() -> Path:
    """The folder of public-domain sample photos shipped inside scikit-image."""
    import skimage.data

    return Path(skimage.data.__file__).resolve().parent


@pytest.fixture(scope="session")
def astronaut_png(skimage_data: Path) -> bytes:
    return (skimage_data / "astronaut.png").read_bytes()


@pytest.fixture(scope="session")
def astronaut_blurred(astronaut_png: bytes, detector, settings):
    """The worker's output for the upright astronaut photo (computed once per session)."""
    from worker.blur import blur_photo

    return blur_photo(astronaut_png, detector, settings)


@pytest.fixture(scope="session")
def astronaut_faces(astronaut_blurred) -> list[Face]:
    """Faces the real detector finds on the upright astronaut photo."""
    assert astronaut_blurred.faces, "the detector found no face on the astronaut photo"
    return astronaut_blurred.faces


@pytest.fixture
def write_files(tmp_path: Path) -> Callable[[dict[str, bytes]], Path]:
    """Write {name: bytes} into a fresh folder and return it."""

    def write(files: dict[str, bytes], folder: str = "in") -> Path:
        target = tmp_path / folder
        target.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (target / name).write_bytes(data)
        return target

    return write
