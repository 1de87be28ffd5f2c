"""One S3 object, start to end: get -> decode -> detect -> redact -> encode -> put. Knows nothing of SQS.

Fail closed: the output is written only after detection completed and the blur was applied; every error
raises, and nothing partial is ever stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from worker.admission import MemoryBudget
from worker.blur import blur_photo
from worker.config import Settings
from worker.detect import Detector
from worker.errors import OutputConflict
from worker.events import ObjectRef
from worker.storage import Storage


@dataclass(slots=True)
class Outcome:
    ref: ObjectRef
    status: str  # "stored" | "skipped" (output already made from this source version)
    output_key: str | None = None
    faces: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def process_object(
    ref: ObjectRef,
    storage: Storage,
    detector: Detector,
    settings: Settings,
    budget: MemoryBudget | None = None,
    force: bool = False,
) -> Outcome:
    """`force` (an operator's reprocess): blur again even where the output was made from this very source."""
    start = time.perf_counter()
    output_key = storage.target.key_for(ref.key)
    ref = storage.identify(ref)
    existing = storage.output_state(ref)
    if existing.same_source and not force:
        return Outcome(ref, "skipped", output_key, timings={"total": time.perf_counter() - start})
    if not existing.replaceable_by(ref):
        raise OutputConflict(
            f"s3://{storage.target.bucket}/{output_key} exists and was not made by this worker from "
            f"s3://{ref.bucket}: it is not overwritten"
        )
    data, etag = storage.fetch(ref)
    downloaded = time.perf_counter()
    result = blur_photo(data, detector, settings, budget)
    blurred = time.perf_counter()
    key = storage.store(
        ref,
        result.data,
        result.content_type,
        etag=etag,
        faces=len(result.faces),
        detector=detector.name,
        replacing=existing.etag,
    )
    done = time.perf_counter()
    if key is None:  # the output appeared meanwhile, made from this same source (see Storage.store)
        return Outcome(ref, "skipped", output_key, timings={"total": done - start})
    timings = {"download": downloaded - start, **result.timings, "upload": done - blurred, "total": done - start}
    return Outcome(ref, "stored", key, len(result.faces), timings)
