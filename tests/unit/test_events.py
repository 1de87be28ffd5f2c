"""worker.events: SQS message bodies (S3 / SNS / EventBridge shapes) -> ObjectRef lists."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker.errors import MalformedMessage, PermanentError
from worker.events import ObjectRef, describe, parse_body

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "events"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _fixture(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text(encoding="utf-8")


def _s3_body(*records: dict[str, object]) -> str:
    return json.dumps({"Records": list(records)})


def _s3_rec(key: object = "a.jpg", *, name: object = "ObjectCreated:Put", **obj: object) -> dict[str, object]:
    return {
        "eventName": name,
        "eventTime": "2024-05-14T09:21:07.512Z",
        "s3": {"bucket": {"name": "bkt"}, "object": {"key": key, **obj}},
    }


def _eventbridge_body(detail_type: str = "Object Created", **fields: object) -> str:
    detail: dict[str, object] = {
        "bucket": {"name": "bkt"},
        "object": {"key": "k.jpg"},
        "reason": "PutObject",
    }
    detail.update(fields)
    return json.dumps(
        {"source": "aws.s3", "detail-type": detail_type, "time": "2024-05-14T09:21:07Z", "detail": detail}
    )


def _sns_body(message: object, kind: str = "Notification") -> str:
    return json.dumps({"Type": kind, "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-west-2:1:t", "Message": message})


_AWS_BUCKET = "faceblur-uploads-example"


def _aws_put(key: str, **overrides: object) -> ObjectRef:
    """The values every record built after the AWS doc example shares (tests/fixtures/events/s3_*)."""
    fields: dict[str, object] = {
        "bucket": _AWS_BUCKET,
        "key": key,
        "size": 2483712,
        "etag": "9b2cf535f27731c974343645a3985328",
        "sequencer": "00664325E37A1B2C3D",
        "event_time": _at("2024-05-14T09:21:07.512"),
        "event_name": "ObjectCreated:Put",
        "region": "us-west-2",
    }
    fields.update(overrides)
    return ObjectRef(**fields)  # type: ignore[arg-type]


EXPECTED: dict[str, list[ObjectRef]] = {
    "s3_put": [_aws_put("incoming/2024/05/IMG_0042.jpg")],
    "s3_put_versioned": [
        _aws_put(
            "incoming/IMG_0043.jpg",
            # "+" in a version id is literal: only keys are URL-encoded.
            version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo",
            size=18874368,
            etag="d41d8cd98f00b204e9800998ecf8427e-3",
            sequencer="0066432A0F5E6B7C8D",
            event_time=_at("2024-05-14T09:43:11.004"),
            event_name="ObjectCreated:CompleteMultipartUpload",
        )
    ],
    "s3_multi_record": [
        _aws_put("batch/a.jpg", size=1001, etag="0cc175b9c0f1b6a831c399e269772661", sequencer="0066432B00000000A1"),
        _aws_put(
            "batch/b.jpg",
            size=2002,
            etag="92eb5ffee6ae2fec3ad71c777531578f",
            sequencer="0066432B00000000B2",
            event_time=_at("2024-05-14T09:21:08"),
            event_name="ObjectCreated:Copy",
        ),
        _aws_put(
            "batch/c.png",
            bucket="faceblur-uploads-other",
            size=3003,
            etag="4a8a08f09d37b73795649038408b5f33",
            sequencer="0066432B00000000C3",
            event_time=_at("2024-05-14T09:21:09.250"),
            event_name="ObjectCreated:Post",
            region="eu-west-1",
        ),
    ],
    "s3_duplicate_records": [
        _aws_put("dup/IMG_1.jpg", sequencer="0066432C00000000D1"),
        _aws_put("dup/IMG_1.jpg", sequencer="0066432C00000000E2", event_time=_at("2024-05-14T09:21:10")),
    ],
    "s3_mixed_created_removed": [_aws_put("mixed/new.jpg", sequencer="0066432D00000000F2")],
    "moto_put": [
        ObjectRef(
            bucket="photos-in",
            key="uploads/team photo+1 café.jpg",
            size=1,
            etag="9dd4e461268c8034f5c8564e155c67a6",
            event_time=_at("2026-11-27T14:46:41.590"),
            event_name="ObjectCreated:Put",
            region="us-east-1",
        )
    ],
    "s3_test_event": [],
    "s3_object_removed": [],
    "s3_key_space": [_aws_put("holiday photos/beach day (1).jpg")],
    "s3_key_plus": [_aws_put("c++/logo+v2.png")],
    "s3_key_unicode": [_aws_put("café/写真.jpg")],
    "sns_envelope_s3_put": [
        _aws_put(
            "from-sns/portrait 01.jpg",
            sequencer="0066433000000000AA",
            event_time=_at("2024-05-14T09:21:07.700"),
        )
    ],
    "sns_raw_s3_put": [_aws_put("from-sns-raw/group+shot.jpg", sequencer="0066433100000000BB")],
    "sns_envelope_test_event": [],
    "sns_subscription_confirmation": [],
    "eventbridge_object_created": [
        ObjectRef(
            bucket=_AWS_BUCKET,
            key="incoming/IMG_0044.jpg",
            version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
            size=5,
            etag="b1946ac92492d2347c6235b4d2611184",
            sequencer="617f08299329d189",
            event_time=_at("2024-05-14T09:21:07"),
            event_name="ObjectCreated:Put",
            region="us-west-2",
        )
    ],
    "eventbridge_special_key": [
        ObjectRef(
            bucket=_AWS_BUCKET,
            # Verbatim: unquote_plus would have produced "incoming/team photo 1 100% café.jpg".
            key="incoming/team photo+1 100%25 café.jpg",
            size=2048,
            etag="c4ca4238a0b923820dcc509a6f75849b-2",
            sequencer="617f0829932a0000",
            event_time=_at("2024-05-14T09:21:07"),
            event_name="ObjectCreated:CompleteMultipartUpload",
            region="us-west-2",
        )
    ],
    "eventbridge_object_deleted": [],
    "eventbridge_object_restore_completed": [],
    "eventbridge_moto": [
        ObjectRef(
            bucket="photos-in",
            key="uploads/team photo+1 café.jpg",
            version_id="null",  # S3's literal id of an unversioned object; GetObject accepts it
            size=1,
            etag="9dd4e461268c8034f5c8564e155c67a6",
            sequencer="617f08299329d189",
            event_time=_at("2026-11-27T14:46:41"),
            event_name="ObjectCreated",
            region="us-east-1",
        )
    ],
    "sns_envelope_eventbridge": [
        ObjectRef(
            bucket=_AWS_BUCKET,
            key="via-sns/IMG_0045.jpg",
            size=77,
            etag="e4da3b7fbbce2345d7772b0674a318d5",
            sequencer="617f0829932b0000",
            event_time=_at("2024-05-14T09:21:07"),
            event_name="ObjectCreated:Put",
            region="us-west-2",
        )
    ],
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_expected_refs(name: str) -> None:
    assert parse_body(_fixture(name)) == EXPECTED[name]


@pytest.mark.parametrize("name", [n for n, refs in EXPECTED.items() if refs])
def test_event_times_are_aware_utc(name: str) -> None:
    for ref in parse_body(_fixture(name)):
        assert ref.event_time is not None
        assert ref.event_time.utcoffset() == UTC.utcoffset(None)


def test_moto_and_eventbridge_shapes_agree_on_the_same_upload() -> None:
    # Both fixtures were captured from one moto put_object: the two decoding rules must meet.
    assert parse_body(_fixture("moto_put"))[0].key == parse_body(_fixture("eventbridge_moto"))[0].key


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("a+b.jpg", "a b.jpg"),
        ("a%2Bb.jpg", "a+b.jpg"),
        ("dir%2Fsub%2Fx.jpg", "dir/sub/x.jpg"),  # moto
        ("dir/sub/x.jpg", "dir/sub/x.jpg"),  # real S3 leaves "/" alone
        ("100%25.jpg", "100%.jpg"),
        ("%3D%26%3F%23.jpg", "=&?#.jpg"),
        ("caf%C3%A9/%E5%86%99%E7%9C%9F.jpg", "café/写真.jpg"),
        ("+", " "),  # a key that is a single space is legal
    ],
)
def test_s3_notification_keys_are_unquote_plus_decoded(encoded: str, decoded: str) -> None:
    [ref] = parse_body(_s3_body(_s3_rec(encoded)))
    assert ref.key == decoded


def test_eventbridge_keys_are_not_decoded() -> None:
    body = _eventbridge_body(object={"key": "a+b%2B c%C3%A9.jpg"})
    [ref] = parse_body(body)
    assert ref.key == "a+b%2B c%C3%A9.jpg"


def test_every_record_is_returned_in_order() -> None:
    keys = [f"k{i}.jpg" for i in range(5)]
    refs = parse_body(_s3_body(*(_s3_rec(k) for k in keys)))
    assert [r.key for r in refs] == keys


def test_duplicates_collapse_but_distinct_versions_and_etags_do_not() -> None:
    body = _s3_body(
        _s3_rec("a.jpg", eTag="e1"),
        _s3_rec("a.jpg", versionId="v2", eTag="e1"),
        _s3_rec("a.jpg", eTag="e1"),
        _s3_rec("a.jpg", eTag="e2"),
        _s3_rec("a.jpg", versionId="v2", eTag="e1"),
    )
    assert [(r.version_id, r.etag) for r in parse_body(body)] == [(None, "e1"), ("v2", "e1"), (None, "e2")]


def test_duplicates_are_compared_after_key_decoding() -> None:
    assert len(parse_body(_s3_body(_s3_rec("a+b.jpg"), _s3_rec("a%20b.jpg")))) == 1


@pytest.mark.parametrize(
    "event_name",
    [
        "ObjectRemoved:Delete",
        "ObjectRemoved:DeleteMarkerCreated",
        "ObjectRestore:Post",
        "ObjectRestore:Completed",
        "ObjectTagging:Put",
        "LifecycleExpiration:Delete",
        "Replication:OperationFailedReplication",
    ],
)
def test_non_create_records_are_skipped_without_validating_them(event_name: str) -> None:
    # Their s3 part is junk on purpose: records we do not act on cannot poison the message.
    body = _s3_body({"eventName": event_name, "s3": "junk"}, _s3_rec("keep.jpg"))
    assert [r.key for r in parse_body(body)] == ["keep.jpg"]
    assert parse_body(_s3_body({"eventName": event_name})) == []


def test_s3_prefixed_event_names_are_normalised() -> None:
    [ref] = parse_body(_s3_body(_s3_rec(name="s3:ObjectCreated:Copy")))
    assert ref.event_name == "ObjectCreated:Copy"


@pytest.mark.parametrize(
    "detail_type",
    ["Object Deleted", "Object Restore Initiated", "Object Tags Added", "Object ACL Updated"],
)
def test_eventbridge_non_create_events_are_ignored(detail_type: str) -> None:
    assert parse_body(_eventbridge_body(detail_type, object="junk")) == []


@pytest.mark.parametrize(
    ("reason", "event_name"),
    [
        ("PutObject", "ObjectCreated:Put"),
        ("POST Object", "ObjectCreated:Post"),
        ("CopyObject", "ObjectCreated:Copy"),
        ("CompleteMultipartUpload", "ObjectCreated:CompleteMultipartUpload"),
        ("SomethingNew", "ObjectCreated"),
        (None, "ObjectCreated"),
    ],
)
def test_eventbridge_reason_maps_to_event_name(reason: str | None, event_name: str) -> None:
    [ref] = parse_body(_eventbridge_body(reason=reason))
    assert ref.event_name == event_name


def test_sns_unsubscribe_confirmation_is_ignored() -> None:
    assert parse_body(_sns_body("plain text, not JSON", kind="UnsubscribeConfirmation")) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-14T09:21:07.512Z", _at("2024-05-14T09:21:07.512")),
        ("2024-05-14T09:21:07Z", _at("2024-05-14T09:21:07")),
        ("2024-05-14T11:21:07+02:00", _at("2024-05-14T09:21:07")),  # converted, not relabelled
        ("2024-05-14T09:21:07", _at("2024-05-14T09:21:07")),  # naive: AWS means UTC
        (1715678467, _at("2024-05-14T09:21:07")),  # epoch seconds
        (1715678467.5, _at("2024-05-14T09:21:07.500")),
        ("yesterday", None),
        ("2024-13-45T99:00:00Z", None),
        ("", None),
        (True, None),
        (None, None),
        ({"t": 1}, None),
        (1e300, None),
    ],
)
def test_event_time_is_parsed_leniently(raw: object, expected: datetime | None) -> None:
    rec = _s3_rec()
    rec["eventTime"] = raw
    [ref] = parse_body(_s3_body(rec))
    assert ref.event_time == expected
    if expected is not None:
        assert ref.event_time is not None
        assert ref.event_time.tzinfo is UTC


def test_unparseable_eventbridge_time_is_none() -> None:
    doc = json.loads(_eventbridge_body())
    doc["time"] = "not a time"
    assert parse_body(json.dumps(doc))[0].event_time is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0, 0), (1024, 1024), ("1024", None), (-1, None), (1.5, None), (True, None), (None, None)],
)
def test_size_is_a_non_negative_int_or_none(raw: object, expected: int | None) -> None:
    [ref] = parse_body(_s3_body(_s3_rec(size=raw)))
    assert ref.size == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"9b2cf535f27731c974343645a3985328"', "9b2cf535f27731c974343645a3985328"),
        ("9b2cf535f27731c974343645a3985328-4", "9b2cf535f27731c974343645a3985328-4"),
        ('""', None),
        ("", None),
        (123, None),
    ],
)
def test_etag_quotes_are_stripped(raw: object, expected: str | None) -> None:
    [ref] = parse_body(_s3_body(_s3_rec(eTag=raw)))
    assert ref.etag == expected


def test_eventbridge_etag_prefers_documented_spelling() -> None:
    [ref] = parse_body(_eventbridge_body(object={"key": "k.jpg", "etag": '"aws"', "eTag": "moto"}))
    assert ref.etag == "aws"


def test_empty_version_id_is_none() -> None:
    [ref] = parse_body(_s3_body(_s3_rec(versionId="")))
    assert ref.version_id is None


# (body, words the error must contain): at least one case per way a message can be malformed.
MALFORMED = {
    "empty": ("", "empty"),
    "whitespace": ("  \n\t", "empty"),
    "not json": ("hello there", "not valid JSON"),
    "truncated json": ('{"Records": [', "not valid JSON"),
    "json array": ("[1, 2]", "array, expected a JSON object"),
    "json string": ('"Records"', "string, expected a JSON object"),
    "json null": ("null", "null, expected a JSON object"),
    "absurd nesting": ("[" * 100_000 + "]" * 100_000, "not usable JSON"),
    "unknown shape": (
        '{"hello": "world", "answer": 42}',
        "unrecognised message shape (top-level keys: 'answer, hello')",
    ),
    "records not a list": (
        '{"Records": {"eventName": "ObjectCreated:Put"}}',
        "Records is an object, expected an array",
    ),
    "records empty": ('{"Records": []}', "Records is empty"),
    "record not an object": (
        '{"Records": ["ObjectCreated:Put"]}',
        "Records[0] is a string, expected an object",
    ),
    "record without eventName": (_s3_body({"s3": {}}), "Records[0].eventName is missing"),
    "eventName not a string": (_s3_body(_s3_rec(name=7)), "Records[0].eventName is a number"),
    "record without s3": (_s3_body({"eventName": "ObjectCreated:Put"}), "Records[0].s3 is missing"),
    "record without bucket name": (
        _s3_body({"eventName": "ObjectCreated:Put", "s3": {"bucket": {}, "object": {"key": "k"}}}),
        "Records[0].s3.bucket.name is missing",
    ),
    "empty bucket name": (
        _s3_body({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": ""}, "object": {"key": "k"}}}),
        "Records[0].s3.bucket.name is empty",
    ),
    "record without object": (
        _s3_body({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}),
        "Records[0].s3.object is missing",
    ),
    "record without key": (_s3_body(_s3_rec(None)), "Records[0].s3.object.key is missing"),
    "key not a string": (_s3_body(_s3_rec(12345)), "Records[0].s3.object.key is a number, expected a string"),
    "key empty": (_s3_body(_s3_rec("")), "Records[0].s3.object.key is empty"),
    "key not utf-8": (_s3_body(_s3_rec("bad%FF%FE.jpg")), "not valid percent-encoded UTF-8: 'bad%FF%FE.jpg'"),
    "one bad record among good ones": (
        _s3_body(_s3_rec("good.jpg"), _s3_rec("also-good.jpg"), _s3_rec(None)),
        "Records[2].s3.object.key is missing",
    ),
    "sns without message": (json.dumps({"Type": "Notification", "MessageId": "m"}), "SNS Message is missing"),
    "sns message blank": (_sns_body("  "), "SNS Message is not valid JSON"),
    "sns message not json": (_sns_body("ObjectCreated a.jpg"), "SNS Message is not valid JSON"),
    "sns message not a string": (_sns_body({"Records": []}), "SNS Message is an object, expected a string"),
    "sns unknown type": (_sns_body("{}", kind="Mystery"), "unsupported SNS message Type 'Mystery'"),
    "sns type not a string": (json.dumps({"Type": ["Notification"]}), "unsupported SNS message Type"),
    "sns inside sns": (_sns_body(_sns_body("{}")), "SNS envelope nested inside another SNS Message"),
    "sns wrapping a bad record": (
        _sns_body(_s3_body(_s3_rec(""))),
        "in SNS Message: Records[0].s3.object.key is empty",
    ),
    "eventbridge foreign source": (
        json.dumps({"source": "aws.ec2", "detail-type": "Object Created", "detail": {}}),
        "unsupported source 'aws.ec2'",
    ),
    "eventbridge without detail": (
        json.dumps({"source": "aws.s3", "detail-type": "Object Created"}),
        "detail is missing",
    ),
    "eventbridge detail not an object": (
        json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": [{}]}),
        "detail is an array, expected an object",
    ),
    "eventbridge without key": (_eventbridge_body(object={"size": 1}), "detail.object.key is missing"),
    "eventbridge without bucket name": (_eventbridge_body(bucket={}), "detail.bucket.name is missing"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_bodies_raise_with_a_useful_message(case: str) -> None:
    body, words = MALFORMED[case]
    with pytest.raises(MalformedMessage) as caught:
        parse_body(body)
    assert words in str(caught.value)
    assert caught.value.reason == "malformed_message"
    assert isinstance(caught.value, PermanentError)


@pytest.mark.parametrize(
    "body",
    [
        "x" * 10_000,  # not JSON
        json.dumps({"y" * 10_000: 1}),  # unknown shape: key names are quoted
        _s3_body(_s3_rec("%FF" + "z" * 10_000)),  # undecodable key
        json.dumps({"source": "s" * 10_000, "detail-type": "Object Created"}),
        _sns_body("{", kind="Notification"),
    ],
)
def test_error_messages_never_dump_the_body(body: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_body(body)
    message = str(caught.value)
    assert len(message) < 200
    assert body not in message


def test_error_excerpts_escape_control_characters() -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_body("oops\nforged log line")
    assert "\n" not in str(caught.value)


def test_describe_is_small_and_bodyless() -> None:
    [ref] = parse_body(_fixture("s3_put_versioned"))
    assert describe(ref) == {
        "bucket": _AWS_BUCKET,
        "key": "incoming/IMG_0043.jpg",
        "version_id": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo",
        "size": 18874368,
        "etag": "d41d8cd98f00b204e9800998ecf8427e-3",
    }


def test_object_ref_is_frozen_hashable_and_slotted() -> None:
    ref = ObjectRef(bucket="b", key="k")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.key = "other"  # type: ignore[misc]
    assert not hasattr(ref, "__dict__")
    assert len({ref, ObjectRef(bucket="b", key="k")}) == 1
