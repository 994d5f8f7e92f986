# Set-up and the two commands the README promises: `make test` and `make demo`.
VENV ?= .venv
PY := $(VENV)/bin/python
# qemu runs the arm64 binaries here; the cross compiler serves --cgo builds and their tests;
# busybox and strace let the bootstrap tests prove it is POSIX sh and forks nothing; unzip checks our zips.
APT_PACKAGES := qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross busybox strace unzip
PYTEST_ARGS ?=

.PHONY: setup system-deps test lint demo bench clean

setup: system-deps $(VENV)/.installed

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

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: setup
	$(PY) examples/demo.py

bench: setup
	status=0; for b in bench/*.py; do echo "== $$b"; $(PY) $$b || status=1; done; exit $$status

clean:
	rm -rf .go-arm-lambda $(VENV) .pytest_cache
