"""Every error a user can see. Each says what went wrong and what to do about it.

Modules raise these; only the CLI turns them into exit codes, `::error` annotations and summary lines,
so the wording lives with the code that knows the cause and the presentation lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1  # the job ran and something failed: a build, a check, a smoke invocation, a deploy
EXIT_USAGE = 2  # the input was wrong; nothing was done


@dataclass(frozen=True)
class Location:
    """Where in the user's files a problem is, for `::error file=...,line=...` annotations."""

    file: str  # absolute, or relative to the current directory; the CLI makes it relative to the workspace
    line: int | None = None
    col: int | None = None
    message: str = ""  # what the tool said about this place (e.g. the compiler's message)


class UserError(Exception):
    """An error with a cause the user can act on. `str()` is the one line we print."""

    exit_code = EXIT_FAILED
    title = "go-arm-lambda"

    def __init__(self, what: str, fix: str = "", *, locations: list[Location] | None = None,
                 details: str = "") -> None:
        self.what = one_line(what).rstrip(".")
        self.fix = one_line(fix)
        self.locations = locations or []
        # Multi-line material shown after the one line (e.g. compiler output); never needed to understand it.
        self.details = details
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.what}. {self.fix}" if self.fix else f"{self.what}."


def one_line(text: str) -> str:
    """What a user gave (a path with a line break, a name with a terminal escape) is shown escaped, so that the
    message stays the one line it is meant to be, and an `::error` line cannot be split or forged."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class UsageError(UserError):
    """Bad input: flags, config, names, ARNs. Raised before anything is built or written."""

    exit_code = EXIT_USAGE
    title = "invalid input"


class ToolchainError(UserError):
    title = "toolchain"


class BuildError(UserError):
    title = "go build failed"


class PackageError(UserError):
    title = "package"


class VerifyError(UserError):
    title = "verify failed"


class SmokeError(UserError):
    title = "smoke invocation failed"


class AwsError(UserError):
    title = "AWS"


class GitHubError(UserError):
    title = "GitHub"


class CheckFailed(UserError):
    """The new version did not answer as wanted when invoked in AWS, and nothing kept traffic off it."""

    title = "deployed-version check failed"


class RolledBack(UserError):
    """The new version failed its check or an alarm fired, and its alias is (back) on the version it had."""

    title = "rolled back"


class InternalError(UserError):
    """A bug in go-arm-lambda, wrapped so that the Action still reports it; its cause keeps the traceback."""

    title = "internal error"



def internal_error(exc: BaseException) -> InternalError:
    """A bug, worded the same wherever it is caught; the cause keeps its traceback for --debug."""
    err = InternalError(f"internal error: {type(exc).__name__}: {exc}",
                        "run again with --debug (in Actions: re-run the job with debug logging) and report the "
                        "traceback")
    err.__cause__ = exc
    return err


def os_error(exc: OSError) -> UserError:
    """What the operating system refused. It speaks of a path only when the error names one."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    # Of a rename's two paths, the target: our atomic writes rename a temporary file onto the path the user named.
    path = exc.filename2 if exc.filename2 is not None else exc.filename
    if path is not None:
        err = UserError(f"cannot use {path}: {reason}", "check the path and its permissions")
    else:
        err = UserError(f"the operating system refused an operation: {reason} ({type(exc).__name__})",
                        "check disk space, open files and the network, then run again")
    err.__cause__ = exc
    return err


def as_user_error(exc: Exception) -> UserError:
    """Any exception as the one line a user sees: ours as they are, an OSError as what it names, else a bug."""
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, OSError):
        return os_error(exc)
    return internal_error(exc)


def raise_problems(problems: list[UserError], cannot: str) -> None:
    """Planning gathers every function's problem before refusing, so one run shows them all: one is raised as it
    is, several as one UsageError listing them ("3 functions cannot be deployed: ...")."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise UsageError(f"{len(problems)} functions cannot be {cannot}: {'; '.join(p.what for p in problems)}",
                         "fix each problem listed; nothing was changed", details="\n".join(str(p) for p in problems))
