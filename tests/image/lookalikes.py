"""Look-alikes of the Dockerfile's base images, for a machine that cannot pull from a container registry.

- BASE_IMAGE (`debian:bookworm-slim`): `debootstrap --variant=minbase bookworm`, made slim the way the official
  image is made (debuerreotype's dpkg path excludes and apt settings), with Debian's three suites as sources.
- GO_IMAGE (`golang:<version>-bookworm`): that, plus the Go toolchain at /usr/local/go, GOPATH=/go and the
  official image's ENV. The Dockerfile takes only /usr/local/go from it. The toolchain is this machine's own
  when its version and architecture match the Dockerfile's, else the same release from the Go module proxy
  (the `golang.org/toolchain` module, which is what GOTOOLCHAIN downloads).

Both carry this machine's certificate authorities (its bundle at /etc/ssl/certs/ca-certificates.crt, its extra
CAs in /usr/local/share/ca-certificates, where the ca-certificates package picks them up) and its
/etc/pip.conf: here TLS to PyPI, Debian and the Go proxy passes through a proxy with its own CA.

Cached: an image that exists is not made again. Prints the build arguments as one JSON line at the end.
Run as root (debootstrap); another architecture needs qemu-user-static registered with binfmt_misc.
Usage: lookalikes.py [--arch amd64|arm64] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from image.dockerhost import ROOT, docker  # noqa: E402

SUITE = "bookworm"
REPOSITORY = "go-arm-lambda-lookalike"
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# debuerreotype's slimify and its apt settings: what makes debian:bookworm-slim differ from a plain minbase.
DPKG_SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
"""
APT_CONF = {
    "docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
    "docker-clean": ('DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb'
                     ' /var/cache/apt/*.bin || true"; };\nAPT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/'
                     '*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
                     'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'),
    "docker-gzip-indexes": 'Acquire::GzipIndexes "true";\n',
    "docker-no-languages": 'Acquire::Languages "none";\n',
}


def go_version() -> str:
    """The Go release the Dockerfile's default GO_IMAGE names."""
    m = re.search(r"^ARG GO_IMAGE=golang:(\d+\.\d+\.\d+)-bookworm", (ROOT / "Dockerfile").read_text(), re.M)
    if m is None:
        raise SystemExit("Dockerfile: no `ARG GO_IMAGE=golang:X.Y.Z-bookworm` line")
    return m.group(1)


def tags(arch: str) -> dict[str, str]:
    return {"BASE_IMAGE": f"{REPOSITORY}/debian:{SUITE}-slim-{arch}",
            "GO_IMAGE": f"{REPOSITORY}/golang:{go_version()}-{SUITE}-{arch}"}


def exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def debian_mirror() -> str:
    """This machine's Debian mirror (the first non-security one in its apt sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        text = source.read_text() if source.is_file() else ""
        for m in re.finditer(r"^(?:URIs:|deb(?:\s+\[[^]]*\])?)\s+(\S+)(.*)$", text, re.M):
            url, rest = m.group(1), m.group(2)
            if "/debian" in url and "security" not in url and (SUITE in rest or "URIs" in m.group(0)):
                return url.rstrip("/")
    return DEFAULT_MIRROR


def make_slim(arch: str, tag: str, work: Path) -> None:
    root = work / "rootfs"
    mirror = debian_mirror()
    try:
        run(["debootstrap", "--variant=minbase", f"--arch={arch}", SUITE, str(root), mirror])
    finally:
        unmount_below(root)
    (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(DPKG_SLIM)
    for sub in ("doc", "groff", "info", "linda", "lintian/overrides", "locale", "man"):
        base = root / "usr/share" / sub
        for path in sorted(base.glob("*")) if base.is_dir() else []:
            if sub == "doc" and path.is_dir() and not path.is_symlink():
                for inner in path.iterdir():
                    if inner.name != "copyright":
                        remove(inner)
            elif not (sub == "locale" and path.name == "locale.alias"):
                remove(path)
    for name, text in APT_CONF.items():
        (root / "etc/apt/apt.conf.d" / name).write_text(text)
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    security = mirror.rsplit("/", 1)[0] + "/debian-security" if mirror.endswith("/debian") else mirror
    (root / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    policy = root / "usr/sbin/policy-rc.d"  # no service starts inside an image build
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    for junk in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log", "tmp"):
        for path in (root / junk).glob("*"):
            if path.name not in ("partial", "lock"):
                remove(path)
    for path in (root / "var/cache/apt").glob("*.bin"):
        path.unlink()
    trust_this_machine(root)
    # Built rather than `docker import`ed: import records the engine's architecture, not the tree's. /dev stays
    # empty, as in the official image: the engine mounts its own.
    context = work / "slim"
    context.mkdir()
    run(["tar", "--numeric-owner", "--exclude=./dev/*", "-C", str(root), "-cf", str(context / "rootfs.tar"), "."])
    (context / "Dockerfile").write_text('FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n')
    docker("build", "--platform", f"linux/{arch}", "-t", tag, str(context), timeout=1800)


def trust_this_machine(root: Path) -> None:
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle, root / "etc/ssl/certs/ca-certificates.crt")
    extra = Path("/usr/local/share/ca-certificates")
    if extra.is_dir():
        shutil.copytree(extra, root / "usr/local/share/ca-certificates", dirs_exist_ok=True)
    if Path("/etc/pip.conf").is_file():
        shutil.copyfile("/etc/pip.conf", root / "etc/pip.conf")


def goroot_for(arch: str, version: str, work: Path) -> Path:
    """A GOROOT of go`version` for linux/`arch`: this machine's, or the toolchain module from the proxy."""
    go = shutil.which("go")
    if go and arch == HOST_ARCH:
        env = {**os.environ, "GOTOOLCHAIN": "local"}
        got = subprocess.run([go, "env", "GOVERSION", "GOROOT"], capture_output=True, text=True, env=env)
        host_version, goroot = [*got.stdout.split(), "", ""][:2]
        if got.returncode == 0 and host_version == f"go{version}":
            return Path(goroot)
    if go is None:
        raise SystemExit("go is not installed: it fetches the Go toolchain module for the look-alike")
    modcache = work / "modcache"
    done = subprocess.run(
        [go, "mod", "download", "-json", f"golang.org/toolchain@v0.0.1-go{version}.linux-{arch}"],
        capture_output=True, text=True, cwd=work,
        env={**os.environ, "GOMODCACHE": str(modcache), "GOFLAGS": "-modcacherw", "GOTOOLCHAIN": "local"})
    if done.returncode != 0:
        raise SystemExit(f"go mod download of the go{version} linux/{arch} toolchain failed: {done.stderr}"
                         f"{done.stdout}")
    return Path(json.loads(done.stdout)["Dir"])


def make_golang(arch: str, base: str, tag: str, work: Path) -> None:
    version = go_version()
    context = work / "golang"
    context.mkdir()
    goroot = goroot_for(arch, version, work)
    shutil.copytree(goroot, context / "go", symlinks=True)
    if goroot.is_relative_to(work):
        # A module zip has no file modes: make it an installed GOROOT, as `go` does with a toolchain it fetched.
        for path in (context / "go").rglob("*"):
            executable = path.is_dir() or path.parent.name == "bin" or "/pkg/tool/" in path.as_posix()
            path.chmod(0o755 if executable else 0o644)
    for sub in ("src", "bin"):  # the official image's GOPATH: open to every user
        (context / "gopath" / sub).mkdir(parents=True)
    for path in (context / "gopath", context / "gopath/src", context / "gopath/bin"):
        path.chmod(0o1777)
    (context / "Dockerfile").write_text(
        f"FROM {base}\n"
        f"ENV GOLANG_VERSION={version} GOTOOLCHAIN=local GOPATH=/go\n"
        "ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        "COPY go /usr/local/go\nCOPY gopath /go\nWORKDIR /go\n")
    docker("build", "--platform", f"linux/{arch}", "-t", tag, str(context), timeout=1800)


def unmount_below(root: Path) -> None:
    """Undo what a failed debootstrap left mounted (/proc, /sys, a bind of /dev): deleting the tree afterwards
    must never reach into the host's."""
    prefix = str(root.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=HOST_ARCH, choices=("amd64", "arm64"))
    parser.add_argument("--rebuild", action="store_true", help="make the images even when they exist")
    args = parser.parse_args()
    wanted = tags(args.arch)
    with tempfile.TemporaryDirectory(prefix="go-arm-lambda-lookalike-", dir="/var/tmp") as tmp:
        if args.rebuild or not exists(wanted["BASE_IMAGE"]):
            print(f"making {wanted['BASE_IMAGE']} with debootstrap", file=sys.stderr)
            make_slim(args.arch, wanted["BASE_IMAGE"], Path(tmp))
        if args.rebuild or not exists(wanted["GO_IMAGE"]):
            print(f"making {wanted['GO_IMAGE']}", file=sys.stderr)
            make_golang(args.arch, wanted["BASE_IMAGE"], wanted["GO_IMAGE"], Path(tmp))
    print(json.dumps(wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
