"""A hostile output: an encoder that writes a forbidden part (a text chunk, EXIF, a trailer) past ImageMagick. Egress
must refuse it there, with its reason, and nothing may be written: not by blur_photo, not by the blur command (its
service-level twin, on moto, is in tests/integration/test_hostile_service.py). Real ImageMagick, real detector."""

from __future__ import annotations

import json

import pytest
from helpers import hostile as h
from helpers.images import exif_segment, insert_segments, png_bytes, png_chunk

from worker.blur import blur_photo, outline_photo
from worker.cli import main
from worker.errors import OutputRefused
from worker.imaging import codec

INJECTIONS = {
    "png": lambda out: h.png_insert(out, png_chunk(b"tEXt", b"Author\0" + h.CANARY)),
    "jpeg": lambda out: insert_segments(out, [exif_segment(h.gps_exif())]),
    "webp": lambda out: out + h.CANARY,  # past the RIFF size
}


@pytest.fixture
def hostile_encoder(monkeypatch):
    """codec._write (ImageMagick's encoding) followed by an injection of a forbidden part."""
    write = codec._write

    def injecting(pixels, layout, output, *args):
        return INJECTIONS[output](write(pixels, layout, output, *args))

    monkeypatch.setattr(codec, "_write", injecting)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: png_bytes(h.astronaut()), "'tEXt' chunk is not allowed"),
        (lambda: h.jpeg_bytes(h.astronaut(), 90), "segment 0xE1 is not allowed"),
        (lambda: h.webp_bytes(h.astronaut()), "RIFF declares"),
    ],
    ids=["png", "jpeg", "webp"],
)
def test_a_forbidden_part_past_the_encoder_is_refused_at_egress(make, words, hostile_encoder, detector, settings):
    data = make()
    with pytest.raises(OutputRefused) as caught:
        blur_photo(data, detector, settings)
    assert caught.value.reason == "output_refused"
    assert words in str(caught.value)
    with pytest.raises(OutputRefused):  # the --boxes dry run goes out the same door
        outline_photo(data, detector, settings)


def test_the_blur_command_writes_nothing_it_refused(hostile_encoder, tmp_path, capsys):
    photo = tmp_path / "in" / "astronaut.png"
    photo.parent.mkdir()
    photo.write_bytes(png_bytes(h.astronaut()))
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert main(["blur", str(photo), "--out", str(out), "--report", str(report), "--jobs", "1"]) == 1
    assert not [p for p in out.rglob("*") if p.is_file()], "a refused output (or its partial) was written"
    (row,) = json.loads(report.read_text())["images"]
    assert row["reason"] == "output_refused"
    assert "tEXt" in row["error"]
