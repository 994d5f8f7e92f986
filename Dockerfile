# The Go Lambda build image: Go, the aarch64 emulator and cross C compiler, and go-arm-lambda in a venv.
#
# Official Go image on Debian bookworm (glibc 2.36; go, git and a native gcc included). Pinned by tag; for an
# image that cannot change under the same tag, pin the digest too:
#   FROM golang:1.26.8-bookworm@sha256:<digest of `docker buildx imagetools inspect golang:1.26.8-bookworm`>
FROM golang:1.26.8-bookworm

# Debian's qemu-user-static carries emulators for some 30 architectures (~370 MB installed); smoke runs only
# arm64 binaries and calls the emulator itself (no binfmt), so everything else is deleted in this same layer.
# gcc-aarch64-linux-gnu + libc6-dev-arm64-cross serve --cgo builds.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
 && find /usr/bin -name 'qemu-*-static' ! -name 'qemu-aarch64-static' -delete \
 && find /usr/libexec/qemu-binfmt -type l ! -name 'aarch64-binfmt-P' -delete \
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
 && rm -rf /opt/go-arm-lambda/src \
 && /opt/go-arm-lambda/venv/bin/go-arm-lambda doctor

# No USER and no WORKDIR: the Actions runner sets both (root, /github/workspace), and `docker run` users pass
# -u and -w themselves.
ENTRYPOINT ["/opt/go-arm-lambda/venv/bin/go-arm-lambda"]
