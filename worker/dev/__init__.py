"""Development only: the embedded local stack (moto), the demo and a fake Rekognition endpoint.

Not part of the container image (pyproject excludes this package) and never imported by production code; the
command line reaches it lazily for `demo` and `local`, and the tests use it.
"""
