"""faceblur worker: blurs every face in photos uploaded to S3."""

import os

__version__ = "0.1.0"

# One BLAS thread: the redaction makes one small matrix product per face, and OpenBLAS's thread hand-off made
# it 2-5x slower (a crowd's blur 1153 ms -> 207 ms at 12 MP). The worker pool is the parallelism. Must be set
# before numpy loads, hence here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
