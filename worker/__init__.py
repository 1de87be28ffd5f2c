"""faceblur worker: blurs every face in photos uploaded to S3."""

__version__ = "0.1.0"
