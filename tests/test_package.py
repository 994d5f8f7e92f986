"""Zips of real arm64 fixture binaries and of the real bootstrap, opened and checked byte by byte."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import deflate
import pytest

from conftest import FUNCTIONS_MODULE, ROOT, GoBuilder, require_tool
from foreignzip import foreign_zip
from go_arm_lambda.errors import PackageError, UsageError
from go_arm_lambda.limits import MAX_UNZIPPED, MAX_ZIP_IN_REQUEST
from go_arm_lambda.package import (
    EXEC_ATTR,
    UNIX,
    ZIP_TIME,
    Artifact,
    bootstrap_script,
    check_limits,
    extract_zip,
    package_function,
    package_layer,
    write_zip,
)

EXEC_FILE_MODE = 0o100755


def local_header_extra_lengths(zip_path: Path) -> list[int]:
    """Extra-field length of each local file header (zipfile's ZipInfo.extra shows only the central one)."""
    data = zip_path.read_bytes()
    with zipfile.ZipFile(zip_path) as zf:
        return [struct.unpack_from("<H", data, info.header_offset + 28)[0] for info in zf.infolist()]


def assert_canonical(zip_path: Path, names: list[str]) -> None:
    """Every property that makes the zip reproducible and keeps the exec bit on any unzip."""
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == names  # sorted, and nothing else: no directory entries
        for info in infos:
            assert not info.is_dir()
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.create_system == 3
            assert info.external_attr == EXEC_FILE_MODE << 16
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert (info.extra, info.comment) == (b"", b"")
        assert zf.comment == b""
        assert zf.testzip() is None
    assert local_header_extra_lengths(zip_path) == [0] * len(names)


def extract_like_lambda(zip_path: Path, dest: Path) -> None:
    """zipfile ignores modes on extract; Lambda (like Info-ZIP unzip) applies the Unix mode it finds."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            os.chmod(zf.extract(info, dest), (info.external_attr >> 16) & 0o7777)


def test_function_zip_holds_the_binary_under_the_handler_name(fixture_bins: Path, tmp_path: Path) -> None:
    binary = fixture_bins / "answer"
    art = package_function(binary, "orders", tmp_path / "orders.zip")
    assert art.path == tmp_path / "orders.zip"
    assert_canonical(art.path, ["orders"])
    with zipfile.ZipFile(art.path) as zf:
        assert zf.read("orders") == binary.read_bytes()
    zip_bytes = art.path.read_bytes()
    assert (art.size, art.unzipped_size) == (len(zip_bytes), binary.stat().st_size)
    assert art.sha256 == hashlib.sha256(zip_bytes).hexdigest()
    assert art.code_sha256 == base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()
    assert list(tmp_path.iterdir()) == [art.path]  # no temporary file left behind
    assert art.path.stat().st_mode & 0o777 == 0o644


def test_function_zip_is_byte_identical_whatever_the_source_files_mtime_mode_or_umask(
        fixture_bins: Path, tmp_path: Path) -> None:
    first = package_function(fixture_bins / "answer", "answer", tmp_path / "a" / "answer.zip")
    again = package_function(fixture_bins / "answer", "answer", tmp_path / "b" / "answer.zip")
    # A copy as a Windows checkout or another umask would leave it: not executable, another mtime.
    copy = tmp_path / "copy" / "answer"
    copy.parent.mkdir()
    shutil.copyfile(fixture_bins / "answer", copy)
    copy.chmod(0o600)
    os.utime(copy, (1_000_000_000, 1_000_000_000))
    old = os.umask(0o077)
    try:
        other = package_function(copy, "answer", tmp_path / "c" / "other-name.zip")
    finally:
        os.umask(old)
    assert first.path.read_bytes() == again.path.read_bytes() == other.path.read_bytes()
    assert first.sha256 == again.sha256 == other.sha256
    assert_canonical(other.path, ["answer"])


def test_different_binaries_give_different_zips(fixture_bins: Path, tmp_path: Path) -> None:
    a = package_function(fixture_bins / "answer", "fn", tmp_path / "a.zip")
    b = package_function(fixture_bins / "nolambda", "fn", tmp_path / "b.zip")
    assert a.sha256 != b.sha256


def test_rewriting_replaces_the_old_zip(fixture_bins: Path, tmp_path: Path) -> None:
    out = tmp_path / "fn.zip"
    out.write_bytes(b"stale")
    art = package_function(fixture_bins / "answer", "fn", out)
    assert out.read_bytes()[:4] == b"PK\x03\x04"
    assert art.size == out.stat().st_size


def test_failed_write_keeps_the_old_zip_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "fn.zip"
    out.write_bytes(b"previous zip")
    with pytest.raises(TypeError):
        write_zip(out, {"a": b"fine", "b": 12345})  # type: ignore[dict-item]  # fails after "a" is written
    assert out.read_bytes() == b"previous zip"
    assert list(tmp_path.iterdir()) == [out]


def test_entries_are_sorted_without_directory_entries(tmp_path: Path) -> None:
    art = write_zip(tmp_path / "multi.zip", {"zeta": b"z", "bin/orders": b"o", "alpha": b"a"})
    assert_canonical(art.path, ["alpha", "bin/orders", "zeta"])
    assert art.unzipped_size == 3


def test_layer_zip_holds_the_real_bootstrap(tmp_path: Path) -> None:
    source = (ROOT / "layer" / "bootstrap").read_bytes()
    assert bootstrap_script() == source
    layer = package_layer(tmp_path / "layer.zip")
    assert_canonical(layer.path, ["bootstrap"])
    with zipfile.ZipFile(layer.path) as zf:
        assert zf.read("bootstrap") == source
    assert layer.unzipped_size == len(source)
    assert package_layer(tmp_path / "again.zip").path.read_bytes() == layer.path.read_bytes()


def test_extracted_zips_run_the_function_through_the_layer(fixture_bins: Path, tmp_path: Path) -> None:
    """What Lambda does: the layer lands in /opt, the function in the task root, modes from the zip."""
    plain = tmp_path / "nolambda"
    shutil.copyfile(fixture_bins / "nolambda", plain)
    plain.chmod(0o644)  # the exec bit must come from the zip, not from the file we zipped
    function = package_function(plain, "nolambda", tmp_path / "fn.zip")
    layer = package_layer(tmp_path / "layer.zip")
    task, opt = tmp_path / "task", tmp_path / "opt"
    extract_like_lambda(function.path, task)
    extract_like_lambda(layer.path, opt)
    assert os.access(task / "nolambda", os.X_OK) and os.access(opt / "bootstrap", os.X_OK)
    # The bootstrap's own missing-handler line proves the extracted script runs and sees the task root.
    result = subprocess.run([opt / "bootstrap"], env={"_HANDLER": "missing", "LAMBDA_TASK_ROOT": str(task)},
                            capture_output=True, text=True, timeout=10, check=False)
    assert result.returncode == 13
    assert result.stderr == f'bootstrap: handler "missing" not found: {task}/missing does not exist; ' \
                            f"{task} contains: nolambda\n"


def test_info_zip_unzip_keeps_the_exec_bit(fixture_bins: Path, tmp_path: Path) -> None:
    """Info-ZIP's unzip is what most people (and most Lambda tooling) extract with."""
    unzip = require_tool("unzip")
    function = package_function(fixture_bins / "answer", "answer", tmp_path / "fn.zip")
    layer = package_layer(tmp_path / "layer.zip")
    extractors = [("python", extract_like_lambda),
                  ("unzip", lambda z, d: subprocess.run([unzip, "-q", z, "-d", d], check=True))]
    for label, extract in extractors:
        dest = tmp_path / label
        extract(function.path, dest)
        extract(layer.path, dest)
        assert sorted(p.name for p in dest.iterdir()) == ["answer", "bootstrap"]
        for name in ("answer", "bootstrap"):
            assert (dest / name).stat().st_mode & 0o777 == 0o755, (label, name)


def skeleton(zip_bytes: bytes) -> list[bytes]:
    """Every header of a zip, byte for byte, with what follows from the compressed bytes (their size and the
    offsets after them) zeroed: the end record, then each central directory header and its local header."""
    end = bytearray(zip_bytes[-22:])
    count, directory = struct.unpack_from("<H4xL", end, 10)
    end[16:20] = bytes(4)
    parts = [bytes(end)]
    for _ in range(count):
        name, extra, comment = struct.unpack_from("<3H", zip_bytes, directory + 28)
        central = bytearray(zip_bytes[directory:directory + 46 + name + extra + comment])
        (local_at,) = struct.unpack_from("<L", central, 42)
        central[20:24] = central[42:46] = bytes(4)
        local_name, local_extra = struct.unpack_from("<2H", zip_bytes, local_at + 26)
        local = bytearray(zip_bytes[local_at:local_at + 30 + local_name + local_extra])
        local[18:22] = bytes(4)
        parts += [bytes(central), bytes(local)]
        directory += len(central)
    return parts


def zipfile_zip(files: dict[str, bytes]) -> bytes:
    """The zip the standard library writes of the same files with zlib, as write_zip did before libdeflate."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.create_system, info.external_attr = UNIX, EXEC_ATTR
            zf.writestr(info, files[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    return out.getvalue()


def test_zip_is_libdeflates_bytes_in_zipfiles_headers(fixture_bins: Path, tmp_path: Path) -> None:
    """Field for field the headers zipfile writes (flags, versions, times, modes; the UTF-8 flag on a name
    that is not ASCII), around libdeflate's level-1 bytes, which are smaller than zlib's level 1."""
    binary = (fixture_bins / "answer").read_bytes()
    files = {"zeta": b"#!/bin/sh\n" * 50, "bin/orders": binary, "café": b"\0" * 70_000, "empty": b""}
    art = write_zip(tmp_path / "fn.zip", files)
    ours, theirs = art.path.read_bytes(), zipfile_zip(files)
    assert skeleton(ours) == skeleton(theirs)
    with zipfile.ZipFile(art.path) as zf:
        for info in zf.infolist():
            start = info.header_offset + 30 + len(info.filename.encode())
            stored = ours[start:start + info.compress_size]
            assert stored == deflate.deflate_compress(files[info.filename], 1)
            assert zf.read(info) == files[info.filename]
            assert info.flag_bits == (0x800 if info.filename == "café" else 0)
    one = write_zip(tmp_path / "one.zip", {"answer": binary})
    assert one.size < len(zipfile_zip({"answer": binary}))


GO_ZIP_READER = r"""// Each entry of a zip as Go's archive/zip reads it: name, mode, time, sha256 of its bytes.
package main

import (
	"archive/zip"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	r, err := zip.OpenReader(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, f := range r.File {
		rc, err := f.Open()
		if err != nil {
			fmt.Fprintln(os.Stderr, f.Name, err)
			os.Exit(1)
		}
		h := sha256.New()
		if _, err := io.Copy(h, rc); err != nil { // archive/zip checks the CRC-32 at the entry's end
			fmt.Fprintln(os.Stderr, f.Name, err)
			os.Exit(1)
		}
		fmt.Printf("%s %s %s %x\n", f.Name, f.Mode(), f.Modified.Format(time.RFC3339), h.Sum(nil))
	}
}
"""


def test_info_zip_and_go_read_every_entry_back(fixture_bins: Path, tmp_path: Path) -> None:
    """`unzip -t` and Go's archive/zip (what Lambda-side tooling in Go reads zips with) take our zips whole."""
    unzip, go = require_tool("unzip"), require_tool("go")
    files = {"bin/orders": (fixture_bins / "answer").read_bytes(), "bootstrap": bootstrap_script(),
             "café": b"x" * 1000}
    art = write_zip(tmp_path / "fn.zip", files)
    tested = subprocess.run([unzip, "-t", art.path], capture_output=True, text=True, timeout=60, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert f"No errors detected in compressed data of {art.path}." in tested.stdout
    program = tmp_path / "zipread" / "main.go"
    program.parent.mkdir()
    program.write_text(GO_ZIP_READER)
    listed = subprocess.run([go, "run", program, art.path], cwd=program.parent, capture_output=True, text=True,
                            env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": ""}, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        f"{name} -rwxr-xr-x 1980-01-01T00:00:00Z {hashlib.sha256(data).hexdigest()}"
        for name, data in sorted(files.items())]


CPU_MODELS = ("Nehalem", "core2duo")  # SSE4.2 without AVX; SSSE3 without SSE4 or PCLMULQDQ


def test_zip_bytes_do_not_depend_on_the_cpu(fixture_bins: Path, gobuild: GoBuilder, tmp_path: Path) -> None:
    """The same binary zipped on this CPU and on older x86-64 ones emulated by qemu: the same sha256, so
    runners of any generation agree on what is unchanged."""
    qemu = require_tool("qemu-x86_64-static")
    # First that the emulated CPUs really lack what this one may have: a Go program built for x86-64-v3
    # (AVX2) refuses to start on them, where qemu's default CPU runs it.
    canary = gobuild.build(FUNCTIONS_MODULE, ["./cmd/nolambda"], goarch="amd64",
                           extra_env={"GOAMD64": "v3"}) / "nolambda"
    started = subprocess.run([qemu, "-cpu", "max", canary], capture_output=True, text=True, timeout=60, check=False)
    assert started.stdout == "I am not a Lambda function\n", started.stderr
    for model in CPU_MODELS:
        refused = subprocess.run([qemu, "-cpu", model, canary], capture_output=True, text=True, timeout=60,
                                 check=False)
        assert "only be run on AMD64 processors with v3 microarchitecture" in refused.stderr, (model, refused)
    source = tmp_path / "input"
    source.write_bytes((fixture_bins / "answer").read_bytes()[:1_500_000])
    native = package_function(source, "answer", tmp_path / "native.zip")
    child = ("import sys; from pathlib import Path; from go_arm_lambda.package import package_function; "
             "print(package_function(Path(sys.argv[1]), 'answer', Path(sys.argv[2])).sha256)")
    for model in CPU_MODELS:
        out = tmp_path / f"{model}.zip"
        emulated = subprocess.run([qemu, "-cpu", model, sys.executable, "-c", child, source, out],
                                  capture_output=True, text=True, timeout=120, check=False)
        assert emulated.returncode == 0, emulated.stderr
        assert emulated.stdout.strip() == native.sha256, model
        assert out.read_bytes() == native.path.read_bytes()


class Claims(bytes):
    """Bytes that say they are 4 GiB long: the size checks see that, without 4 GiB of memory."""

    def __len__(self) -> int:
        return 1 << 32


def test_an_entry_over_4_gib_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "fn.zip"
    out.write_bytes(b"previous zip")
    with pytest.raises(PackageError) as err:
        write_zip(out, {"a": b"fine", "orders": Claims(b"x")})
    assert str(err.value) == (
        "'orders' is 4,294,967,296 bytes, more than a zip without zip64 holds (4 GiB). Lambda unzips at most "
        "250 MB for a function and its layers: make the binary smaller (-ldflags '-s -w', fewer dependencies)")
    assert "\n" not in str(err.value)
    assert out.read_bytes() == b"previous zip"
    assert list(tmp_path.iterdir()) == [out]


def test_more_entries_than_a_zip_without_zip64_holds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"^65,535 files are more than a zip without zip64 holds \(65,534\)"):
        write_zip(tmp_path / "many.zip", {f"f{i}": b"" for i in range(0xFFFF)})
    assert list(tmp_path.iterdir()) == []
    art = write_zip(tmp_path / "most.zip", {f"f{i}": b"" for i in range(0xFFFE)})
    with zipfile.ZipFile(art.path) as zf:
        assert len(zf.infolist()) == 0xFFFE


def test_symlinked_binary_is_refused(fixture_bins: Path, tmp_path: Path) -> None:
    link = tmp_path / "answer"
    link.symlink_to(fixture_bins / "answer")
    with pytest.raises(PackageError) as err:
        package_function(link, "answer", tmp_path / "out" / "answer.zip")
    assert str(err.value) == (f"binary {link} is a symlink: go-arm-lambda never puts symlinks in a zip. "
                              f"point at the real file ({fixture_bins / 'answer'})")
    assert not (tmp_path / "out" / "answer.zip").exists()


def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"^binary .*/nothere does not exist\. build it first"):
        package_function(tmp_path / "nothere", "nothere", tmp_path / "x.zip")


def test_directory_is_not_a_binary(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"^binary .* is not a regular file\. point at the built exec"):
        package_function(tmp_path, "x", tmp_path / "x.zip")


@pytest.mark.parametrize("handler", ["", "/orders", "../orders", "a/../b", "bin/", "a//b", "bin\\orders",
                                     "./orders", "my orders", "orders\n", "x" * 129])
def test_handler_names_lambda_or_the_bootstrap_would_refuse(fixture_bins: Path, tmp_path: Path,
                                                            handler: str) -> None:
    """limits.check_handler's rule, the one smoke and deploy apply too: a zip we write is one we can run."""
    with pytest.raises(UsageError) as err:
        package_function(fixture_bins / "answer", handler, tmp_path / "x.zip")
    assert err.value.exit_code == 2
    assert str(err.value) == (f"handler {handler!r} is not valid. use the binary's path inside the zip: 1-128 "
                              "characters, no spaces, not absolute, no . or .. segments (e.g. orders)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("handler", ["orders", "bin/orders", "x" * 128, "my-fn_v2.arm64"])
def test_handler_names_lambda_accepts(fixture_bins: Path, tmp_path: Path, handler: str) -> None:
    art = package_function(fixture_bins / "answer", handler, tmp_path / "x.zip")
    assert_canonical(art.path, [handler])


def sized(size: int, unzipped: int) -> Artifact:
    """Limits depend only on the sizes; real 250 MB files would make the suite slow without testing more."""
    return Artifact(Path("fn.zip"), "00" * 32, size, unzipped)


def test_limits_at_the_boundaries() -> None:
    layer = sized(1_600, 4_000)
    assert check_limits(sized(MAX_ZIP_IN_REQUEST, MAX_UNZIPPED - 4_000), layer, "orders") is False
    assert check_limits(sized(MAX_ZIP_IN_REQUEST + 1, MAX_UNZIPPED - 4_000), layer, "orders") is True
    assert check_limits(sized(10, MAX_UNZIPPED), None, "orders") is False


def test_unzipped_limit_counts_the_layer() -> None:
    with pytest.raises(PackageError) as err:
        check_limits(sized(60_000_000, MAX_UNZIPPED - 3_999), sized(1_600, 4_000), "orders")
    assert str(err.value) == (
        "function orders is 262,144,001 bytes unzipped with the bootstrap layer, over Lambda's limit of "
        "262,144,000 bytes (250 MB) for a function and its layers. make the binary smaller "
        "(-ldflags '-s -w', fewer dependencies) or ship it as a container image")


def test_unzipped_limit_without_layer() -> None:
    with pytest.raises(PackageError, match=r"^function orders is 262,144,001 bytes unzipped, over"):
        check_limits(sized(1, MAX_UNZIPPED + 1), None, "orders")


# --- extracting zips that other tools wrote --------------------------------------------------------------

def test_extract_restores_modes_and_links(tmp_path: Path) -> None:
    zpath = foreign_zip(tmp_path / "f.zip", [("bin/run", b"#!/bin/sh\n", 0o100755),
                                           ("data.txt", b"x", 0o100600), ("run", b"bin/run", 0o120777),
                                           ("suid", b"x", 0o106755), ("sticky", b"x", 0o101777)])
    extract_zip(zpath, tmp_path / "out")
    assert (tmp_path / "out/bin/run").stat().st_mode & 0o7777 == 0o755
    assert (tmp_path / "out/data.txt").stat().st_mode & 0o7777 == 0o600
    assert (tmp_path / "out/run").readlink() == Path("bin/run")
    # Permission bits only: no setuid, setgid or sticky bit from a zip lands on this machine.
    assert (tmp_path / "out/suid").stat().st_mode & 0o7777 == 0o755
    assert (tmp_path / "out/sticky").stat().st_mode & 0o7777 == 0o777


def test_extract_takes_an_entry_from_a_file_the_zip_vouches_for_and_nothing_else(tmp_path: Path) -> None:
    zpath = foreign_zip(tmp_path / "f.zip", [("fn", b"\x7fELF the binary", 0o100644), ("other", b"x", 0o100755)])
    same = tmp_path / "same"
    same.write_bytes(b"\x7fELF the binary")
    same.chmod(0o755)
    extract_zip(zpath, tmp_path / "a", {"fn": same})
    # The zip's mode, not the file's: a handler zipped without its exec bit still fails as it would on Lambda.
    assert (tmp_path / "a/fn").read_bytes() == same.read_bytes()
    assert (tmp_path / "a/fn").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a/other").read_bytes() == b"x"
    differs = tmp_path / "differs"
    differs.write_bytes(b"\x7fELF the binarY")  # same size, another CRC-32: the zip's own bytes win
    extract_zip(zpath, tmp_path / "b", {"fn": differs, "other": tmp_path / "missing"})
    assert (tmp_path / "b/fn").read_bytes() == b"\x7fELF the binary"
    assert (tmp_path / "b/other").read_bytes() == b"x"


@pytest.mark.parametrize("damage", ["a compressed byte", "the size the directory gives"])
def test_a_damaged_deflated_entry_is_refused_not_extracted(tmp_path: Path, damage: str) -> None:
    """Inflated by libdeflate, not zipfile: it must still refuse what zipfile would, and write nothing wrong."""
    data = b"".join(i.to_bytes(4, "little") for i in range(50_000))
    zpath = write_zip(tmp_path / "f.zip", {"fn": data}).path
    raw = bytearray(zpath.read_bytes())
    extract_zip(zpath, tmp_path / "good")
    assert (tmp_path / "good/fn").read_bytes() == data
    if damage == "a compressed byte":
        raw[30 + len("fn") + 1000] ^= 0xFF
    else:  # one byte more than there is, in the central directory (zipfile's source) and the local header
        central = raw.index(b"PK\1\2")
        for at in (22, central + 24):
            raw[at:at + 4] = (len(data) + 1).to_bytes(4, "little")
    zpath.write_bytes(bytes(raw))
    with pytest.raises(UsageError, match=f"^'{zpath}' is damaged"):
        extract_zip(zpath, tmp_path / "bad")
    assert not (tmp_path / "bad/fn").exists()


@pytest.mark.parametrize(("field", "value", "says"), [
    (6, 1, "holds 'fn' encrypted, which Lambda cannot unzip. rebuild the zip without a password"),
    (8, 99, "is damaged (That compression method is not supported). package the function again"),
])
def test_extract_refuses_an_encrypted_entry_or_an_unknown_method_in_one_line(tmp_path: Path, field: int, value: int,
                                                                              says: str) -> None:
    zpath = foreign_zip(tmp_path / "f.zip", [("fn", b"hello", 0o100755)])
    raw = bytearray(zpath.read_bytes())
    central = raw.index(b"PK\1\2")
    for at in (field, central + field + 2):  # the flags or the method, in the local header and the directory
        raw[at:at + 2] = value.to_bytes(2, "little")
    zpath.write_bytes(bytes(raw))
    with pytest.raises(UsageError) as info:
        extract_zip(zpath, tmp_path / "out")
    assert str(info.value) == f"'{zpath}' {says}"
    assert not (tmp_path / "out/fn").exists()


@pytest.mark.parametrize(("entries", "says"), [
    ([("x" * 300, b"x", 0o100755)], f"holds '{'x' * 300}', which cannot be extracted: File name too long"),
    ([("a", b"x", 0o100755), ("a/b", b"y", 0o100755)],
     "holds 'a/b', which cannot be extracted: a file and a directory in it share a path"),
    ([("a/", b"", 0o40755), ("a/b", b"y", 0o100755), ("a/b/c", b"z", 0o100755)],
     "holds 'a/b/c', which cannot be extracted: a file and a directory in it share a path"),
    ([("ln", b"a\0b", 0o120777)], "holds 'ln', which cannot be extracted: its link target holds a NUL byte"),
])
def test_extract_names_an_entry_this_file_system_cannot_hold(tmp_path: Path, entries: list[tuple[str, bytes, int]],
                                                               says: str) -> None:
    zpath = foreign_zip(tmp_path / "f.zip", entries)
    with pytest.raises(UsageError) as info:
        extract_zip(zpath, tmp_path / "out")
    assert str(info.value) == f"'{zpath}' {says}. rebuild the zip (go-arm-lambda package writes one file per name)"


def test_extract_refuses_more_than_lambda_unzips_before_writing(tmp_path: Path) -> None:
    """A real zip bomb: 250 KB that inflates to one byte over Lambda's 250 MB."""
    zpath = tmp_path / "bomb.zip"
    zeros = bytes(1 << 20)
    info = zipfile.ZipInfo("answer")
    info.compress_type = zipfile.ZIP_DEFLATED
    with (zipfile.ZipFile(zpath, "w", compresslevel=1) as zf, zf.open(info, "w", force_zip64=True) as out):
        for _ in range(MAX_UNZIPPED // len(zeros)):
            out.write(zeros)
        out.write(b"\0" * (MAX_UNZIPPED % len(zeros) + 1))
    assert zpath.stat().st_size < 1_000_000
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UsageError) as info:
        extract_zip(zpath, dest)
    assert str(info.value) == (f"'{zpath}' unzips to 262,144,001 bytes, over Lambda's limit of 262,144,000 "
                               "bytes (250 MB) for a function and its layers. make the binary smaller "
                               "(-ldflags '-s -w', fewer dependencies)")
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(("entries", "says"), [
    ([("../evil", b"x", 0o100644)], "unsafe name '../evil'"),
    ([("/etc/evil", b"x", 0o100644)], "unsafe name '/etc/evil'"),
    ([("a/../../evil", b"x", 0o100644)], "unsafe name"),
    ([("up", b"../..", 0o120777)], "symlink 'up' -> '../..' outside it"),
    ([("abs", b"/etc", 0o120777)], "symlink 'abs' -> '/etc' outside it"),
    ([("a", b"b/..", 0o120777), ("b", b".", 0o120777), ("a/evil", b"x", 0o100644)],
     "writes 'a/evil' through a link outside"),
    ([("up", b"sub", 0o120777), ("up", b"..", 0o120777)], "holds 'up' twice"),
])
@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_extract_refuses_names_outside_the_root(tmp_path: Path, entries: list[tuple[str, bytes, int]],
                                                 says: str) -> None:
    zpath = foreign_zip(tmp_path / "f.zip", entries)
    with pytest.raises(UsageError, match=says):
        extract_zip(zpath, tmp_path / "out")
    assert not (tmp_path / "evil").exists()
