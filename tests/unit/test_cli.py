"""`python -m worker blur INPUT... --out DIR --report r.json`, run as a real subprocess.

The two runs start together (module fixture) so their start-up costs overlap.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.images import jpeg_bytes, mean_abs_diff, pil_array, png_bytes, textured_rgb
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parents[2]
STAGES = {"decode", "detect", "blur", "encode"}


def _start(inputs: list[Path], out: Path, report: Path) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # Wand tries ~50 library names with ctypes.util.find_library (each spawning ldconfig) before Debian's
    # "-6.Q16"; naming it first only reorders the search and saves a second of start-up.
    env.setdefault("WAND_MAGICK_LIBRARY_SUFFIX", "-6.Q16")
    cmd = [sys.executable, "-m", "worker", "blur", *map(str, inputs), "--out", str(out), "--report", str(report)]
    return subprocess.Popen(cmd, cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Run:
    def __init__(self, proc: subprocess.Popen[str], out: Path, report: Path) -> None:
        self.stdout, self.stderr = proc.communicate(timeout=120)
        self.code = proc.returncode
        self.out = out
        self.report = json.loads(report.read_text()) if report.exists() else None

    def row(self, name: str) -> dict:
        rows = [r for r in self.report["images"] if Path(r["input"]).name == name]
        assert len(rows) == 1, name
        return rows[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, skimage_data) -> dict[str, Run]:
    mixed = tmp_path_factory.mktemp("mixed")
    inputs = mixed / "in"
    inputs.mkdir()
    (inputs / "astronaut.png").write_bytes((skimage_data / "astronaut.png").read_bytes())
    with PILImage.open(skimage_data / "coffee.png") as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=90)
    (inputs / "coffee.jpg").write_bytes(buf.getvalue())
    (inputs / "broken.jpg").write_bytes(jpeg_bytes(textured_rgb(160, 120), 90)[:100])  # cut inside the header
    (inputs / "notes.png").write_text("shopping list: milk, eggs\n")
    names = ["astronaut.png", "coffee.jpg", "broken.jpg", "notes.png"]
    mixed_args = [inputs / n for n in names] + [inputs / "missing.jpg"]

    valid = tmp_path_factory.mktemp("valid")
    (valid / "in" / "sub").mkdir(parents=True)
    (valid / "in" / "small.png").write_bytes(png_bytes(textured_rgb(96, 64)))
    (valid / "in" / "sub" / "small.jpg").write_bytes(jpeg_bytes(textured_rgb(96, 64), 90))
    (valid / "in" / "readme.txt").write_text("not picked up: folders yield image suffixes only\n")

    procs = {
        "mixed": (_start(mixed_args, mixed / "out", mixed / "report.json"), mixed),
        "valid": (_start([valid / "in"], valid / "out", valid / "report.json"), valid),
    }
    return {key: Run(proc, base / "out", base / "report.json") for key, (proc, base) in procs.items()}


def test_a_failed_input_makes_the_exit_code_1(runs):
    run = runs["mixed"]
    assert run.code == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert "2 blurred, 3 failed" in run.stdout


def test_outputs_exist_only_for_the_valid_images_with_the_same_names(runs, skimage_data):
    run = runs["mixed"]
    assert sorted(p.name for p in run.out.iterdir()) == ["astronaut.png", "coffee.jpg"]  # no partial files
    with PILImage.open(run.out / "astronaut.png") as im:
        assert (im.format, im.size) == ("PNG", (512, 512))
    with PILImage.open(run.out / "coffee.jpg") as im:
        assert (im.format, im.size) == ("JPEG", (600, 400))


def test_report_lists_faces_with_box_and_score(runs, astronaut_faces):
    run = runs["mixed"]
    assert run.report is not None
    assert len(run.report["images"]) == 5
    assert run.report["version"]
    row = run.row("astronaut.png")
    assert row["error"] is None
    assert row["reason"] is None
    assert Path(row["output"]) == run.out / "astronaut.png"
    assert len(row["faces"]) >= 1
    for face in row["faces"]:
        assert {"x", "y", "w", "h", "score"} <= set(face)
        assert 0 < face["score"] <= 1
        assert face["w"] > 0
        assert face["h"] > 0
    best = max(row["faces"], key=lambda f: f["score"])
    expected = astronaut_faces[0]  # the same photo blurred in-process
    assert best["x"] == pytest.approx(expected.x, abs=2)
    assert best["y"] == pytest.approx(expected.y, abs=2)
    assert best["w"] == pytest.approx(expected.w, abs=2)
    assert best["h"] == pytest.approx(expected.h, abs=2)


def test_the_face_in_the_cli_output_is_blurred(runs, skimage_data):
    row = runs["mixed"].row("astronaut.png")
    face = max(row["faces"], key=lambda f: f["score"])
    before = pil_array((skimage_data / "astronaut.png").read_bytes())
    after = pil_array(Path(row["output"]).read_bytes())
    ys = slice(int(face["y"]), int(face["y"] + face["h"]))
    xs = slice(int(face["x"]), int(face["x"] + face["w"]))
    assert mean_abs_diff(after[ys, xs], before[ys, xs]) > 20
    assert np.array_equal(after[450:, :], before[450:, :])  # far below the face: untouched


def test_report_has_per_stage_timings(runs):
    run = runs["mixed"]
    for name in ("astronaut.png", "coffee.jpg"):
        timings = run.row(name)["timings_ms"]
        assert set(timings) >= STAGES, timings
        assert all(isinstance(v, int | float) and v >= 0 for v in timings.values())
        assert timings["total"] >= max(timings[s] for s in STAGES)
    assert run.row("coffee.jpg")["faces"] == []  # a cup of coffee has no face


@pytest.mark.parametrize(
    ("name", "reason", "words"),
    [
        ("broken.jpg", "corrupt_image", ("corrupt", "truncated", "decoded")),
        ("notes.png", "not_an_image", ("not an image",)),
        ("missing.jpg", "io_error", ("no such file", "cannot read")),
    ],
)
def test_report_has_the_error_and_reason_for_each_bad_input(runs, name, reason, words):
    run = runs["mixed"]
    row = run.row(name)
    assert row["reason"] == reason
    assert row["error"]
    assert any(w in row["error"].lower() for w in words), row["error"]
    assert row["output"] is None
    assert row["faces"] == []
    assert name in run.stderr  # the failure is also reported on the terminal


def test_a_run_with_only_valid_images_exits_0(runs):
    run = runs["valid"]
    assert run.code == 0, run.stderr
    outputs = sorted(str(p.relative_to(run.out)) for p in run.out.rglob("*") if p.is_file())
    assert outputs == ["small.png", str(Path("sub") / "small.jpg")]  # the folder layout is kept
    assert len(run.report["images"]) == 2
    assert all(r["error"] is None and r["output"] for r in run.report["images"])
    assert "2 blurred, 0 failed" in run.stdout


# In-process runs of worker.cli.main for argument handling (the model is shared with the other tests).


def _main(argv: list[str]) -> int | str | None:
    from worker.cli import main

    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors
        return exc.code


def test_two_inputs_with_the_same_output_name_are_refused(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.png").write_bytes(png_bytes(textured_rgb(32, 24)))
    code = _main(
        ["blur", str(tmp_path / "a" / "same.png"), str(tmp_path / "b" / "same.png"), "--out", str(tmp_path / "out")]
    )
    assert code == 2
    assert "same output name" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_jobs_must_be_positive(tmp_path, jobs):
    (tmp_path / "a.png").write_bytes(png_bytes(textured_rgb(32, 24)))
    assert _main(["blur", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--jobs", jobs]) == 2


def test_run_against_an_unreachable_endpoint_says_so_in_one_line(tmp_path):
    """Start-up calls that fail after botocore's retries end in one clear line and exit 4, not a traceback."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "AWS_DEFAULT_REGION"},
        "QUEUE_URL": "http://127.0.0.1:9/000000000000/q",
        "AWS_REGION": "eu-west-1",  # what ECS and the Terraform set; the botocore we pin reads AWS_DEFAULT_REGION
        "OUTPUT_BUCKET": "out",
        "SOURCE_BUCKETS": "in-bucket",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # the discard port: nothing listens
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "METRICS_PORT": "0",
        "STARTUP_WAIT_SECONDS": "1",  # a fresh worker waits a minute for compose's moto to come up; not here
    }
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "worker", "run"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 4, done.stderr[-2000:]
    assert "could not start: AWS call failed" in done.stderr
    assert "Could not connect to the endpoint URL" in done.stderr
    assert "Traceback" not in done.stderr
