"""go-arm-lambda: build, verify, smoke-invoke and ship Go Lambda functions on arm64."""


def __getattr__(name: str) -> str:
    # Looked up on first use: importlib.metadata takes ~40 ms to import, and the smoke runner's reaper imports
    # this package once per invocation, which a 200-function build pays 200 times.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("go-arm-lambda")
    except PackageNotFoundError:  # running from a source tree that was never installed
        value = "0.0.0+source"
    globals()["__version__"] = value
    return value
