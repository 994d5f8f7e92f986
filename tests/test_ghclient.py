"""The sticky pull request comment, through real PyGithub against the local GitHub double."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from githubdouble import READ_TOKEN, WRITE_TOKEN, GitHubDouble
from go_arm_lambda import ghclient
from go_arm_lambda.errors import GitHubError
from go_arm_lambda.render import comment_marker

REPO = "acme/shop"


def _upsert(gh: GitHubDouble, body: str, *, comment_id: str = "default", token: str = WRITE_TOKEN,
            repo: str = REPO, pr: int = 7) -> ghclient.CommentResult:
    return ghclient.upsert_comment(token, gh.base_url, repo, pr, comment_id,
                                   f"{comment_marker(comment_id)}\n{body}")


def test_first_run_creates_second_run_edits_the_same_comment(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    first = _upsert(github_double, "deployed v1")
    assert first.action == "created" and first.warning is None
    second = _upsert(github_double, "deployed v2")
    assert second.action == "updated" and second.comment_id == first.comment_id

    comments = github_double.comments(REPO, 7)
    assert [c["body"] for c in comments] == [f"{comment_marker('default')}\ndeployed v2"]
    writes = github_double.writes()
    assert [(w.method, w.path) for w in writes] == [
        ("POST", f"/repos/{REPO}/issues/7/comments"),
        ("PATCH", f"/repos/{REPO}/issues/comments/{first.comment_id}"),
    ]
    assert writes[1].body == {"body": f"{comment_marker('default')}\ndeployed v2"}
    assert all(r.headers["Authorization"] == f"token {WRITE_TOKEN}" for r in github_double.requests)


def test_marker_on_the_second_page_is_found(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    for i in range(120):
        github_double.add_comment(REPO, 7, f"review note {i}")
    ours = github_double.add_comment(REPO, 7, f"{comment_marker('default')}\nold", user="github-actions[bot]")
    for i in range(29):
        github_double.add_comment(REPO, 7, f"later note {i}")

    result = _upsert(github_double, "new")
    assert (result.action, result.comment_id) == ("updated", ours)
    assert len(github_double.comments(REPO, 7)) == 150
    pages = [r.query.get("page", "1") for r in github_double.requests if r.method == "GET"]
    assert pages == ["1", "2"]  # followed GitHub's Link header to the page that holds it


def test_marker_quoted_inside_someone_elses_comment_is_not_ours(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    quoted = github_double.add_comment(REPO, 7, f"> {comment_marker('default')}\n> see above")
    result = _upsert(github_double, "report")
    assert result.action == "created" and result.comment_id != quoted


def test_two_comment_ids_keep_two_comments(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    for run in (1, 2):
        _upsert(github_double, f"staging run {run}", comment_id="staging")
        _upsert(github_double, f"prod run {run}", comment_id="prod")
    bodies = sorted(c["body"] for c in github_double.comments(REPO, 7))
    assert bodies == [f"{comment_marker('prod')}\nprod run 2", f"{comment_marker('staging')}\nstaging run 2"]


def test_body_without_marker_gets_one(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    ghclient.upsert_comment(WRITE_TOKEN, github_double.base_url, REPO, 7, "x", "plain")
    ghclient.upsert_comment(WRITE_TOKEN, github_double.base_url, REPO, 7, "x", "plain again")
    assert [c["body"] for c in github_double.comments(REPO, 7)] == [f"{comment_marker('x')}\nplain again"]


def test_read_only_token_is_skipped_with_a_warning_and_writes_nothing(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    result = _upsert(github_double, "report", token=READ_TOKEN)
    assert result.action == "skipped"
    assert "Resource not accessible by integration" in (result.warning or "")
    assert "pull-requests: write" in (result.warning or "")
    assert github_double.comments(REPO, 7) == []
    # The one write was refused by GitHub; nothing was retried or written another way.
    refused = [(w.method, w.path) for w in github_double.writes()]
    assert refused == [("POST", f"/repos/{REPO}/issues/7/comments")]


def test_read_only_token_cannot_edit_an_existing_comment_either(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    first = _upsert(github_double, "v1")
    result = _upsert(github_double, "v2", token=READ_TOKEN)
    assert result.action == "skipped"
    assert [c["body"] for c in github_double.comments(REPO, 7)] == [f"{comment_marker('default')}\nv1"]
    assert first.comment_id is not None


def test_fork_pr_is_skipped_without_any_request(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    result = ghclient.upsert_comment(WRITE_TOKEN, github_double.base_url, REPO, 7, "default", "x", fork=True)
    assert result.action == "skipped" and "fork" in (result.warning or "")
    assert github_double.requests == []


def test_unknown_repo_is_a_github_error_with_what_and_fix(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    with pytest.raises(GitHubError) as err:
        _upsert(github_double, "x", repo="acme/nope")
    assert "pull request #7 in acme/nope was not found" in str(err.value)
    assert "pr-number" in err.value.fix
    with pytest.raises(GitHubError, match="pull request #8 in acme/shop was not found"):
        _upsert(github_double, "x", pr=8)


def test_bad_token_is_a_github_error(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    with pytest.raises(GitHubError, match="rejected the token"):
        _upsert(github_double, "x", token="ghs_wrong")


def test_failing_server_gives_up_quickly(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    github_double.state.fail_with = 502
    started = time.monotonic()
    with pytest.raises(GitHubError, match="502"):
        _upsert(github_double, "x")
    assert time.monotonic() - started < 10
    assert 2 <= len(github_double.requests) <= 3  # bounded retries, then a clear error


def test_create_whose_answer_was_lost_is_found_not_repeated(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    github_double.state.bad_gateway_creates = [True]  # created, but the gateway answers 502

    result = _upsert(github_double, "v1")

    comments = github_double.comments(REPO, 7)
    assert [c["body"] for c in comments] == [f"{comment_marker('default')}\nv1"]
    assert (result.action, result.comment_id) == ("created", comments[0]["id"])
    assert [w.method for w in github_double.writes()] == ["POST"]  # never posted a second time
    assert _upsert(github_double, "v2").action == "updated"
    assert len(github_double.comments(REPO, 7)) == 1


def test_create_that_failed_is_not_repeated(github_double: GitHubDouble) -> None:
    github_double.add_pull_request(REPO, 7)
    github_double.state.bad_gateway_creates = [False, False, False]

    with pytest.raises(GitHubError, match="GitHub answered 502 while commenting on pull request #7"):
        _upsert(github_double, "v1")

    assert github_double.comments(REPO, 7) == []
    assert [w.method for w in github_double.writes()] == ["POST"]
    # It looked again before giving up: the comment might have landed.
    assert [r.method for r in github_double.requests] == ["GET", "POST", "GET"]


def test_unreachable_api_is_a_github_error() -> None:
    with GitHubDouble() as gh:
        url = gh.base_url
    with pytest.raises(GitHubError, match="failed"):
        ghclient.upsert_comment(WRITE_TOKEN, url, REPO, 7, "default", "x")


def test_enterprise_server_base_url_with_api_prefix() -> None:
    with GitHubDouble(prefix="/api/v3") as gh:
        gh.add_pull_request(REPO, 3)
        assert gh.base_url.endswith("/api/v3")
        assert _upsert(gh, "v1", pr=3).action == "created"
        assert _upsert(gh, "v2", pr=3).action == "updated"
        assert [c["body"] for c in gh.comments(REPO, 3)] == [f"{comment_marker('default')}\nv2"]
        ours = gh.comments(REPO, 3)[0]["id"]
        assert {r.path for r in gh.requests} == {f"/repos/{REPO}/issues/3/comments",
                                                f"/repos/{REPO}/issues/comments/{ours}"}


# --- the event payload -------------------------------------------------------------------------------------

def _payload(tmp_path: Path, head: str | None, base: str = REPO, number: int = 42) -> Path:
    pr = {"number": number, "head": {"ref": "feature", "repo": {"full_name": head} if head else None},
          "base": {"ref": "main", "repo": {"full_name": base}}}
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"action": "synchronize", "number": number, "pull_request": pr}))
    return path


def test_pr_number_from_pull_request_payload(tmp_path: Path) -> None:
    event = _payload(tmp_path, REPO)
    assert ghclient.pr_number_from_event(event, None) == 42
    assert ghclient.pr_number_from_event(event, 5) == 5  # the pr-number input wins
    assert not ghclient.is_fork_pr(event, "pull_request")


def test_push_event_has_no_pr(tmp_path: Path) -> None:
    push = tmp_path / "push.json"
    push.write_text(json.dumps({"ref": "refs/heads/main", "after": "abc"}))
    assert ghclient.pr_number_from_event(push, None) is None
    assert not ghclient.is_fork_pr(push, "push")
    assert ghclient.pr_number_from_event(None, None) is None


def test_fork_detection(tmp_path: Path) -> None:
    event = _payload(tmp_path, "stranger/shop")
    assert ghclient.is_fork_pr(event, "pull_request")
    # pull_request_target runs with the base repository's write token: commenting works.
    assert not ghclient.is_fork_pr(event, "pull_request_target")
    assert ghclient.pr_number_from_event(event, None) == 42
    assert ghclient.is_fork_pr(_payload(tmp_path, None), "pull_request")  # the fork was deleted


def test_bad_event_payload_is_a_github_error(tmp_path: Path) -> None:
    bad = tmp_path / "event.json"
    bad.write_text("{not json")
    with pytest.raises(GitHubError, match="is not JSON"):
        ghclient.pr_number_from_event(bad, None)
    with pytest.raises(GitHubError, match="does not exist"):
        ghclient.pr_number_from_event(tmp_path / "missing.json", None)
