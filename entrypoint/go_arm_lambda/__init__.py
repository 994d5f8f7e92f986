"""go-arm-lambda: build, verify, smoke-invoke and ship Go Lambda functions on arm64."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("go-arm-lambda")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
