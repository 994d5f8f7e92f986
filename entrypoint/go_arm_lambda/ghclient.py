"""The only PyGithub user: the sticky pull request comment, and reading the pull request from the event.

One comment per pull request and comment id, found by the hidden marker that starts its body, edited in place
on every run and created only the first time. A token that may not write (a fork's pull request, or a
workflow without `pull-requests: write`) does not fail the job: the deploy already happened, so the caller
shows a warning and the job summary carries the report.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from github import Auth, Github, GithubException, GithubRetry
from github.Issue import Issue
from github.IssueComment import IssueComment

from go_arm_lambda.errors import GitHubError
from go_arm_lambda.render import comment_marker

# PyGithub logs every refused request at INFO to stderr by default; we turn a refusal into one clear warning.
logging.getLogger("github").setLevel(logging.WARNING)

DEFAULT_API_URL = "https://api.github.com"
# A comment is a handful of requests: fail within seconds rather than hang a deploy job on GitHub.
_TIMEOUT_SECONDS = 15
# Only requests that are safe to repeat are retried. A POST that timed out or got a 5xx may still have created
# the comment, and repeating it would post a second copy; upsert_comment looks before it tells.
_RETRY = GithubRetry(total=2, backoff_factor=0.25, secondary_rate_wait=5, max_rate_limit_wait=30,
                     allowed_methods=frozenset({"GET", "PATCH"}))
_PER_PAGE = 100  # GitHub's maximum: fewest requests to see every comment

_FORK_WARNING = ("the pull request comes from a fork, and GitHub gives such workflows a read-only token, "
                 "so no comment was written; the job summary has the report")
_READ_ONLY_WARNING = ("the token may not comment on pull requests ({message}), so no comment was written; "
                      "give the job `permissions: pull-requests: write` (or set comment: never); "
                      "the job summary has the report")


EventPath = str | os.PathLike[str] | None


@dataclass(frozen=True)
class CommentResult:
    action: Literal["created", "updated", "skipped"]
    comment_id: int | None = None
    url: str | None = None
    warning: str | None = None  # set when skipped: the text for a `::warning` annotation


def _event(event_path: EventPath) -> dict[str, Any]:
    if not event_path:
        return {}
    try:
        data = json.loads(Path(event_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GitHubError(f"the event payload {event_path} does not exist",
                          "run under GitHub Actions or unset GITHUB_EVENT_PATH") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GitHubError(f"the event payload {event_path} is not JSON ({exc})",
                          "point GITHUB_EVENT_PATH at the event file the runner wrote") from None
    return data if isinstance(data, dict) else {}


def pr_number_from_event(event_path: EventPath, explicit: int | None = None) -> int | None:
    """The pull request to comment on: `explicit` (the pr-number input) wins, else `.pull_request.number`
    of a pull_request or pull_request_target payload; None for pushes and other events."""
    if explicit is not None:
        return explicit
    number = (_event(event_path).get("pull_request") or {}).get("number")
    return number if isinstance(number, int) else None


def is_fork_pr(event_path: EventPath, event_name: str | None = None) -> bool:
    """Whether this is a `pull_request` run from a fork, where every token is read-only and there are no
    secrets.

    `pull_request_target` runs in the base repository with a write token, so it is not counted: commenting
    works there. `event_name` is `$GITHUB_EVENT_NAME`. A head repository that was deleted counts as a fork.
    """
    if event_name is not None and event_name != "pull_request":
        return False
    pr = _event(event_path).get("pull_request") or {}
    if not pr:
        return False
    head = ((pr.get("head") or {}).get("repo") or {}).get("full_name")
    base = ((pr.get("base") or {}).get("repo") or {}).get("full_name")
    return head != base


def _client(token: str, api_url: str | None) -> Github:
    # lazy: no request until one is needed, so an update costs one listing and one edit. GitHub asks for a
    # pause between writes, but we write once per run, so PyGithub's own pacing would only slow the job.
    return Github(auth=Auth.Token(token), base_url=(api_url or DEFAULT_API_URL).rstrip("/"),
                  timeout=_TIMEOUT_SECONDS, retry=_RETRY, per_page=_PER_PAGE, lazy=True,
                  seconds_between_requests=None, seconds_between_writes=None)


def _message(exc: GithubException) -> str:
    data = exc.data if isinstance(exc.data, Mapping) else {}
    return str(data.get("message") or exc.data or exc).strip()


def _find(issue: Issue, marker: str) -> IssueComment | None:
    """Our comment: the one whose body starts with the marker (a quote of it elsewhere does not count)."""
    return next((c for c in issue.get_comments() if (c.body or "").startswith(marker)), None)


def upsert_comment(token: str, api_url: str | None, repo_full_name: str, pr_number: int, comment_id: str,
                   body: str, *, fork: bool = False) -> CommentResult:
    """Create or update the sticky comment. Never makes a second copy.

    `body` should come from render.comment_body (it starts with the marker; if not, the marker is added).
    `fork=True` (from is_fork_pr) skips without any request. A 403 on writing gives a skipped result with a
    warning; any other failure raises GitHubError with what to do.
    """
    if fork:
        return CommentResult("skipped", warning=_FORK_WARNING)
    marker = comment_marker(comment_id)
    if not body.startswith(marker):
        body = f"{marker}\n{body}"
    where = f"pull request #{pr_number} in {repo_full_name}"
    gh = _client(token, api_url)
    try:
        issue = gh.get_repo(repo_full_name).get_issue(pr_number)
        existing = _find(issue, marker)
        if existing is not None:
            existing.edit(body)
            return CommentResult("updated", existing.id, existing.html_url)
        try:
            created = issue.create_comment(body)
        except (GithubException, OSError) as exc:
            if isinstance(exc, GithubException) and exc.status < 500:
                raise
            # The answer was lost, not necessarily the comment: if it landed, it is there now with our body.
            landed = _find(issue, marker)
            if landed is None:
                raise
            return CommentResult("created", landed.id, landed.html_url)
        return CommentResult("created", created.id, created.html_url)
    except GithubException as exc:
        message = _message(exc)
        if exc.status == 403 and "rate limit" not in message.lower():
            return CommentResult("skipped", warning=_READ_ONLY_WARNING.format(message=message))
        if exc.status == 401:
            raise GitHubError(f"GitHub rejected the token while commenting on {where} ({message})",
                              "pass a valid token in github-token (the default ${{ github.token }} works)"
                              ) from None
        if exc.status == 404:
            raise GitHubError(f"{where} was not found at {api_url or DEFAULT_API_URL} ({message})",
                              "check pr-number, the repository and that the token can read it") from None
        raise GitHubError(f"GitHub answered {exc.status} while commenting on {where} ({message})",
                          "retry the job; set comment: never to skip the comment") from None
    except OSError as exc:  # requests' errors (refused, timed out, retries used up on 5xx) are OSErrors
        raise GitHubError(f"commenting on {where} through {api_url or DEFAULT_API_URL} failed ({exc})",
                          "check GITHUB_API_URL and GitHub's status, then retry; "
                          "set comment: never to skip the comment") from None
    finally:
        gh.close()
