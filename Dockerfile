# The Go Lambda build image: Go, the aarch64 emulator and C compiler, and go-arm-lambda in a venv, on Debian slim.
#
# The bases are build arguments so that a machine which cannot pull them can pass look-alikes (tests/image does);
# the defaults are the official images, pinned by tag. For images that cannot change under the same tag, pin the
# digests too: --build-arg GO_IMAGE=golang:1.26.8-bookworm@sha256:<digest> (and the same for BASE_IMAGE).
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

# Only /usr/local/go comes from the official Go image: the rest of it (a native gcc, headers, svn, ...) made up
# most of the old 1.1 GB image, and nothing here uses it.
FROM ${GO_IMAGE} AS go

# The venv is built in its own stage, so pip, setuptools and python3-venv stay out of the image.
FROM ${BASE_IMAGE} AS venv
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Dependencies first, at the versions pyproject.toml pins and constraints.txt locks (transitive ones too):
# this layer is rebuilt only when those two files change.
COPY pyproject.toml constraints.txt /opt/go-arm-lambda/src/
RUN python3 -m venv /opt/go-arm-lambda/venv \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/opt/go-arm-lambda/src/pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
 && /opt/go-arm-lambda/venv/bin/pip install -c /opt/go-arm-lambda/src/constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
# Then the package, which changes most often; its dependencies are already in place.
COPY README.md /opt/go-arm-lambda/src/
COPY layer/ /opt/go-arm-lambda/src/layer/
COPY entrypoint/ /opt/go-arm-lambda/src/entrypoint/
RUN /opt/go-arm-lambda/venv/bin/pip install --no-deps /opt/go-arm-lambda/src \
 && /opt/go-arm-lambda/venv/bin/pip uninstall -y -q pip setuptools

FROM ${BASE_IMAGE}
# ca-certificates: go fetches modules over TLS. git: `safe.directory` under Actions, modules fetched from VCS.
# amd64: Lambda's arm64 binaries run under qemu. Debian's qemu-user-static carries emulators for some 30
# architectures (~370 MB); all but aarch64 are deleted in this same layer (smoke calls the emulator itself, no
# binfmt). arm64: they run natively. The C compiler for cgo (the aarch64 cross compiler on amd64, 175 MB; the
# native gcc on arm64, 150 MB) is left out: the first cgo build in a container installs what cgo-packages names
# (10-30 s, as root).
RUN set -eu; \
    case "$(dpkg --print-architecture)" in \
      amd64) arch_packages="qemu-user-static" \
             cgo_packages="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;; \
      arm64) arch_packages="" cgo_packages="gcc libc6-dev" ;; \
      *) echo "go-arm-lambda's image is built for amd64 and arm64 only" >&2; exit 1 ;; \
    esac; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates git python3 $arch_packages; \
    find /usr/bin -name 'qemu-*-static' ! -name 'qemu-aarch64-static' -delete; \
    find /usr/libexec/qemu-binfmt -type l ! -name 'aarch64-binfmt-P' -delete 2>/dev/null || true; \
    rm -rf /var/lib/apt/lists/*; \
    mkdir -p /opt/go-arm-lambda; \
    echo "$cgo_packages" > /opt/go-arm-lambda/cgo-packages

COPY --from=go /usr/local/go /usr/local/go
COPY --from=venv /opt/go-arm-lambda/venv /opt/go-arm-lambda/venv
# Go's caches default to where any user can write, also on a read-only root file system with a /tmp: `docker run
# -u UID:GID` gets HOME=/ (not writable). GOCACHE and GOMODCACHE themselves stay unset, so the Action still puts
# them in the workspace (where actions/cache keeps them) and a user can point them anywhere.
ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    GOPATH=/tmp/go XDG_CACHE_HOME=/tmp/.cache

# The image checks itself, with caches that are thrown away: nothing a run writes to may be left root-owned.
RUN GOPATH=/tmp/doctor XDG_CACHE_HOME=/tmp/doctor /opt/go-arm-lambda/venv/bin/go-arm-lambda doctor \
 && rm -rf /tmp/doctor

# No USER and no WORKDIR: the Actions runner sets both (root, /github/workspace), and `docker run` users pass
# -u and -w themselves.
ENTRYPOINT ["/opt/go-arm-lambda/venv/bin/go-arm-lambda"]
