# faceblur worker. `make demo` sets everything up and runs the worker on an embedded local stack;
# `make test` runs the whole test suite (CI runs exactly that).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint unit bench quality soak clean system-deps infra-tools

install: $(STAMP)

# ImageMagick's library comes from Debian; installed only when missing (needs root, as on CI and in the image).
system-deps:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml requirements/constraints.txt worker/detect/model.py scripts/install-system-deps.sh
	@bash scripts/install-system-deps.sh
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	$(VPY) -m worker.detect.model
	touch $(STAMP)

demo: install
	$(VPY) -m worker demo

lint: install
	$(VPY) -m ruff check worker tests bench
	$(VPY) -m ruff format --check worker tests bench
	$(VPY) -m mypy

test: install infra-tools lint
	$(VPY) -m pytest -q

unit: install
	$(VPY) -m pytest -q tests/unit

quality: install
	$(VPY) -m pytest -q -m quality

bench: install
	$(VPY) bench/run_all.py

# Chaos soak: real workers SIGKILLed and restarted, S3/SQS faults, Rekognition throttling, hostile uploads; checks
# nothing is lost, unblurred or written twice. SOAK_UPLOADS=150 (the short one also runs in `make test`);
# `SOAK_UPLOADS=1000 make soak` is the long one. The report goes to build/soak-report.md and .json.
SOAK_UPLOADS ?= 150
soak: install
	mkdir -p build
	$(VPY) -m tests.soak.harness --uploads $(SOAK_UPLOADS) --markdown build/soak-report.md --json build/soak-report.json \
		--keep-logs build/soak-logs

# Offline verification tools for deploy/ (terraform fmt, HashiCorp's parser, checkov, podman, hadolint,
# the compose-spec loader). Idempotent; installs under .cache/ and apt.
infra-tools:
	@bash scripts/install-infra-tools.sh
	@bash scripts/container-tools.sh
	@bash scripts/install-monitoring-tools.sh

clean:
	rm -rf $(VENV) out build .pytest_cache .ruff_cache
