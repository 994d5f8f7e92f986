# Set-up and the two commands the README promises: `make test` and `make demo`.
VENV ?= .venv
PY := $(VENV)/bin/python
# qemu runs the arm64 binaries here; the cross compiler serves --cgo builds and their tests (on an arm64 host the
# native gcc does); busybox and strace let the bootstrap tests prove it is POSIX sh and forks nothing; unzip checks
# our zips; shellcheck checks the workflows' scripts for actionlint.
CC_PACKAGES := $(if $(filter aarch64 arm64,$(shell uname -m)),gcc libc6-dev,gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
APT_PACKAGES := qemu-user-static $(CC_PACKAGES) busybox strace unzip shellcheck
# `make test-image`: debootstrap makes look-alike base images where no registry can be reached; qemu builds the
# arm64 image on other hosts; Debian's docker.io brings an engine where none is installed.
IMAGE_APT_PACKAGES := debootstrap qemu-user-static $(if $(shell command -v dockerd),,docker.io)
# actionlint checks the workflows in `make test`; built from its Go module, at this version.
ACTIONLINT_VERSION := v1.7.12
PYTEST_ARGS ?=

.PHONY: setup system-deps test test-image lint demo bench clean

setup: system-deps $(VENV)/.installed $(VENV)/.actionlint-$(ACTIONLINT_VERSION)

# Installs only what is missing, and only as root; otherwise it says what to install.
system-deps:
	@command -v go >/dev/null || { echo "go is not on PATH: install Go 1.23 or newer" >&2; exit 1; }
	@# Debian's own python3 needs python3-venv for `python3 -m venv`; other Pythons carry venv themselves.
	@missing=""; \
	python3 -c 'import ensurepip' 2>/dev/null || missing=" python3-venv"; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing Debian packages:$$missing; run: sudo apt-get install$$missing" >&2; exit 1; fi; \
	fi

$(VENV)/.installed: pyproject.toml constraints.txt
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "python3 is older than 3.11" >&2; exit 1; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

$(VENV)/.actionlint-$(ACTIONLINT_VERSION): $(VENV)/.installed
	GOBIN=$(abspath $(VENV))/bin GOFLAGS=-modcacherw GOTOOLCHAIN=local \
	  go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	touch $@

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Builds the image from the Dockerfile and runs it as the Actions runner and the README do. Needs root where no
# Docker engine runs (the tests start one and stop it) or no registry is reachable (look-alike bases).
test-image: setup
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(IMAGE_APT_PACKAGES)"
	$(VENV)/bin/pytest -m image tests/image $(PYTEST_ARGS)

demo: setup
	$(PY) examples/demo.py

bench: setup
	status=0; for b in bench/*.py; do echo "== $$b"; $(PY) $$b || status=1; done; exit $$status

clean:
	rm -rf .go-arm-lambda $(VENV) .pytest_cache
