"""worker.config: defaults, environment parsing, validation that names the offending variable."""

from __future__ import annotations

import dataclasses

import pytest

from worker.config import (
    ConfigError,
    DetectSettings,
    RedactSettings,
    Settings,
    describe,
    env_var,
    from_env,
)


def test_defaults_are_valid_and_match_the_documentation():
    s = Settings()
    assert s.detect == DetectSettings()
    assert (s.detect.threshold, s.detect.coarse_side, s.detect.fine_side) == (0.2, 640, 1024)
    assert (s.detect.max_upscale, s.detect.rotated_side, s.detect.rotated_threshold) == (1.5, 480, 0.4)
    assert s.detect.rotated_coarse_threshold == 0.5
    assert (s.redact.mode, s.redact.shape, s.redact.padding, s.redact.padding_large) == ("blur", "rect", 0.4, 0.2)
    assert (s.image.max_pixels, s.image.max_side, s.image.jpeg_quality) == (50_000_000, 20_000, 0)


def test_empty_environment_gives_defaults():
    assert from_env({}) == Settings()


def test_empty_values_count_as_unset():
    assert from_env({"BLUR_MODE": "", "MAX_PIXELS": ""}) == Settings()


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.redact.mode = "solid"  # type: ignore[misc]


def test_environment_is_parsed_into_each_group():
    env = {
        "DETECT_THRESHOLD": "0.5",
        "DETECT_COARSE_SIDE": "800",
        "DETECT_FINE_SIDE": "0",
        "DETECT_MAX_UPSCALE": "1.5",
        "DETECT_NMS_IOU": "0.4",
        "DETECT_ROTATED_SIDE": "0",
        "DETECT_ROTATED_THRESHOLD": "0.6",
        "DETECT_ROTATED_COARSE_THRESHOLD": "0.7",
        "BLUR_MODE": "pixelate",
        "BLUR_PADDING": "0.5",
        "BLUR_PADDING_LARGE": "0.25",
        "BLUR_CELLS": "12",
        "PIXELATE_BLOCKS": "6",
        "BLUR_SHAPE": "ellipse",
        "MAX_PIXELS": "1000000",
        "MAX_SIDE": "4000",
        "JPEG_QUALITY": "88",
        "MAGICK_MEMORY_LIMIT": "256MiB",
        "MAGICK_MAP_LIMIT": "512MiB",
        "MAGICK_DISK_LIMIT": "1GiB",
        "MAGICK_THREAD_LIMIT": "2",
    }
    s = from_env(env)
    assert s.detect == DetectSettings(
        threshold=0.5,
        coarse_side=800,
        fine_side=0,
        max_upscale=1.5,
        nms_iou=0.4,
        rotated_side=0,
        rotated_threshold=0.6,
        rotated_coarse_threshold=0.7,
    )
    assert s.redact == RedactSettings(
        mode="pixelate", padding=0.5, padding_large=0.25, cells=12, blocks=6, shape="ellipse"
    )
    assert s.image.max_pixels == 1_000_000
    assert s.image.max_side == 4000
    assert s.image.jpeg_quality == 88
    assert (s.image.memory_limit, s.image.map_limit, s.image.disk_limit) == ("256MiB", "512MiB", "1GiB")
    assert s.image.threads == 2
    assert isinstance(s.detect.coarse_side, int)
    assert isinstance(s.detect.threshold, float)


def test_values_are_trimmed():
    s = from_env({"BLUR_MODE": " solid ", "BLUR_CELLS": " 10 ", "DETECT_THRESHOLD": " 0.4\n"})
    assert (s.redact.mode, s.redact.cells, s.detect.threshold) == ("solid", 10, 0.4)


def test_every_setting_has_its_variable():
    s = Settings()
    names = {
        f"{group.name}.{f.name}"
        for group in dataclasses.fields(Settings)
        for f in dataclasses.fields(getattr(s, group.name))
    }
    assert "redact.mode" in names
    assert "image.max_pixels" in names
    assert set(describe(s)) == names
    variables = [env_var(*key.split(".")) for key in names]
    assert len(set(variables)) == len(variables)  # one variable per setting
    for key, var in zip(names, variables, strict=True):
        group, name = key.split(".")
        default = getattr(getattr(s, group), name)
        # The variable really drives its setting: the default, as text, round-trips.
        assert getattr(getattr(from_env({var: str(default) or " "}), group), name) == default


def test_every_numeric_variable_rejects_text_and_names_itself():
    s = Settings()
    numeric = [key for key, value in describe(s).items() if isinstance(value, int | float)]
    assert len(numeric) >= 12
    for key in numeric:
        var = env_var(*key.split("."))
        with pytest.raises(ConfigError) as info:
            from_env({var: "not-a-number"})
        assert var in str(info.value)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        # not a number
        ("DETECT_THRESHOLD", "high"),
        ("DETECT_COARSE_SIDE", "640px"),
        ("DETECT_COARSE_SIDE", "640.5"),
        ("BLUR_CELLS", "eight"),
        ("MAX_PIXELS", "50M"),
        ("MAGICK_THREAD_LIMIT", "1.0"),
        # out of range
        ("DETECT_THRESHOLD", "0"),
        ("DETECT_THRESHOLD", "0.99"),
        ("DETECT_THRESHOLD", "nan"),
        ("DETECT_COARSE_SIDE", "100"),
        ("DETECT_COARSE_SIDE", "5000"),
        ("DETECT_FINE_SIDE", "320"),  # not above the coarse side
        ("DETECT_FINE_SIDE", "640"),
        ("DETECT_FINE_SIDE", "9000"),
        ("DETECT_FINE_SIDE", "-1"),
        ("DETECT_MAX_UPSCALE", "0.5"),
        ("DETECT_MAX_UPSCALE", "inf"),
        ("DETECT_NMS_IOU", "0"),
        ("DETECT_NMS_IOU", "1"),
        ("BLUR_MODE", "smudge"),
        ("BLUR_MODE", "BLUR"),
        ("BLUR_PADDING", "-0.1"),
        ("BLUR_PADDING", "2"),
        ("BLUR_CELLS", "1"),
        ("BLUR_CELLS", "25"),
        ("PIXELATE_BLOCKS", "9"),
        ("PIXELATE_BLOCKS", "1"),
        ("BLUR_SHAPE", "circle"),
        ("MAX_PIXELS", "0"),
        ("MAX_PIXELS", "2000000000"),
        ("MAX_SIDE", "0"),
        ("MAX_SIDE", "70000"),
        ("JPEG_QUALITY", "20"),
        ("JPEG_QUALITY", "101"),
        ("MAGICK_THREAD_LIMIT", "0"),
        ("MAGICK_THREAD_LIMIT", "65"),
        ("LOG_LEVEL", "verbose"),
        ("MEMORY_BUDGET", "lots"),
        ("MAX_METADATA_BYTES", "10"),
    ],
)
def test_invalid_value_names_the_variable(var, value):
    with pytest.raises(ConfigError) as info:
        from_env({var: value})
    assert var in str(info.value)


def test_fine_side_bound_follows_the_coarse_side():
    assert from_env({"DETECT_COARSE_SIDE": "320", "DETECT_FINE_SIDE": "480"}).detect.fine_side == 480
    with pytest.raises(ConfigError, match="DETECT_FINE_SIDE"):
        from_env({"DETECT_COARSE_SIDE": "1000", "DETECT_FINE_SIDE": "900"})


@pytest.mark.parametrize(
    ("var", "value"),
    [("JPEG_QUALITY", "0"), ("JPEG_QUALITY", "30"), ("JPEG_QUALITY", "100"), ("DETECT_FINE_SIDE", "8192"),
     ("BLUR_PADDING", "0"), ("BLUR_PADDING", "1"), ("PIXELATE_BLOCKS", "8"), ("MAX_SIDE", "32000")],
)  # fmt: skip
def test_boundary_values_are_accepted(var, value):
    from_env({var: value})


def test_settings_built_in_code_are_validated_too():
    with pytest.raises(ConfigError, match="BLUR_MODE"):
        Settings(redact=RedactSettings(mode="nope"))


@pytest.mark.parametrize("var", ["MAGICK_MEMORY_LIMIT", "MAGICK_MAP_LIMIT", "MAGICK_DISK_LIMIT"])
def test_invalid_magick_limit_names_the_variable(var):
    with pytest.raises(ConfigError) as info:
        from_env({var: "lots"})
    assert var in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["garbage", "https://sqs.eu-west-1.amazonaws.com/faceblur", "ftp://x/123456789012/q", "https://h/123/q"],
)
def test_a_queue_url_of_the_wrong_shape_is_refused_at_once(url):
    with pytest.raises(ConfigError, match="QUEUE_URL must be an SQS queue URL"):
        from_env({"QUEUE_URL": url, "OUTPUT_BUCKET": "out-bucket", "SOURCE_BUCKETS": "in-bucket"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OUTPUT_BUCKET": "out-bucket"}, "SOURCE_BUCKETS must be set"),
        ({"OUTPUT_BUCKET": "out-bucket", "SOURCE_BUCKETS": "arn:aws:s3:::x"}, "SOURCE_BUCKETS must be valid"),
        ({"OUTPUT_BUCKET": "Out_Bucket", "SOURCE_BUCKETS": "in-bucket"}, "OUTPUT_BUCKET must be valid"),
    ],
)
def test_buckets_are_required_and_must_be_names(env, message):
    with pytest.raises(ConfigError, match=message):
        from_env({"QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/q", **env})
    ok = {"QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/q", "OUTPUT_BUCKET": "out-bucket"}
    settings = from_env({**ok, "SOURCE_BUCKETS": "in-bucket, second.bucket"})
    assert settings.source_buckets == {"in-bucket", "second.bucket"}


def test_readme_configuration_table_is_generated_from_the_declarations():
    from pathlib import Path

    from worker.config import settings_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    begin = readme.index("<!-- settings-table:begin")
    block = readme[readme.index("\n", begin) + 1 : readme.index("<!-- settings-table:end -->")]
    assert block == settings_table(), "README's table differs: paste `python -m worker settings` between the markers"


def test_every_setting_is_declared_once_with_its_variable_and_help():
    from worker.config import declarations

    names = [f.metadata["env"] for _, f in declarations()]
    assert len(names) == len(set(names))
    assert all(f.metadata["help"] for _, f in declarations())
    # Each variable really reaches its field.
    for group, f in declarations():
        if isinstance(f.default, int) and f.metadata["rule"] is not None and f.metadata["rule"].ok(f.default + 1):
            settings = from_env({f.metadata["env"]: str(f.default + 1)})
            assert getattr(getattr(settings, group), f.name) == f.default + 1


def test_a_poll_the_grace_period_and_settling_fit_in_the_stop_timeout():
    from worker.config import SETTLE_SECONDS, STOP_TIMEOUT_SECONDS, ConfigError, from_env

    assert from_env({}).service.shutdown_grace_seconds + 20 + SETTLE_SECONDS <= STOP_TIMEOUT_SECONDS  # the defaults
    assert from_env({"SHUTDOWN_GRACE_SECONDS": "95"}).service.shutdown_grace_seconds == 95  # 20 + 95 + 5 = 120
    with pytest.raises(ConfigError, match="SHUTDOWN_GRACE_SECONDS must be at most 120 - SQS_WAIT_SECONDS - 5"):
        from_env({"SHUTDOWN_GRACE_SECONDS": "96"})
    assert from_env({"SHUTDOWN_GRACE_SECONDS": "114", "SQS_WAIT_SECONDS": "1"}).service.wait_seconds == 1
    with pytest.raises(ConfigError, match="SHUTDOWN_GRACE_SECONDS"):
        from_env({"SHUTDOWN_GRACE_SECONDS": "100", "SQS_WAIT_SECONDS": "20"})
