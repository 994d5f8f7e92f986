"""A small local double of the GitHub REST API: what the sticky pull request comment needs, answered as GitHub
answers it.

Serves, under an optional path prefix (GitHub Enterprise Server puts the API under `/api/v3`):
  GET   /repos/{o}/{r}                          the repository
  GET   /repos/{o}/{r}/issues/{n}  and /pulls/{n} the pull request (a pull request is an issue)
  GET   /repos/{o}/{r}/issues/{n}/comments      paged: per_page (default 30, max 100), page, Link header
  POST  /repos/{o}/{r}/issues/{n}/comments      create -> 201 with Location
  PATCH /repos/{o}/{r}/issues/comments/{id}     edit -> 200
Tokens: `Authorization: token T` or `Bearer T`; unknown -> 401 "Bad credentials"; a read-only token may
read but every write gets 403 "Resource not accessible by integration", as GITHUB_TOKEN does on a fork's
pull request.
Unknown repository, issue or comment -> 404 "Not Found". Every request is recorded for assertions.
Faults: `state.fail_with` answers every request with one status; `state.bad_gateway_creates` answers the next
comment creates with 502, the comment created anyway (True: the gateway lost GitHub's answer) or not (False).

Use `with GitHubDouble() as gh:` (or `GitHubDouble(prefix="/api/v3")`), or the `github_double` fixture
registered by conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

WRITE_TOKEN = "ghs_writetoken0000000000000000000000"
READ_TOKEN = "ghs_readonlytoken00000000000000000000"
_DOCS = "https://docs.github.com/rest"


@dataclass
class Recorded:
    method: str
    path: str  # without the prefix and the query
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class _State:
    repos: dict[str, set[int]] = field(default_factory=dict)  # full name -> pull request numbers
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=lambda: {WRITE_TOKEN: "write", READ_TOKEN: "read"})
    requests: list[Recorded] = field(default_factory=list)
    next_id: int = 1000
    fail_with: int | None = None  # answer every request with this status (to test timeouts and retries)
    bad_gateway_creates: list[bool] = field(default_factory=list)  # see the module docstring


class GitHubDouble:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix.rstrip("/")
        self.state = _State()
        self.lock = threading.Lock()
        double = self

        class Handler(_Handler):
            pass

        Handler.double = double
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A short poll interval: shutdown() waits for it, and every test stops a server.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    # --- lifecycle ---
    def __enter__(self) -> GitHubDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        """What GITHUB_API_URL would be."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.prefix}"

    # --- arranging state ---
    def add_pull_request(self, repo: str, number: int) -> None:
        with self.lock:
            self.state.repos.setdefault(repo, set()).add(number)

    def add_comment(self, repo: str, number: int, body: str, user: str = "someone") -> int:
        with self.lock:
            return self._create(repo, number, body, user)

    def _create(self, repo: str, number: int, body: str, user: str) -> int:
        self.state.next_id += 1
        cid = self.state.next_id
        stamp = "2025-01-01T00:00:00Z"
        self.state.comments[cid] = {"id": cid, "repo": repo, "number": number, "body": body, "user": user,
                                    "created_at": stamp, "updated_at": stamp}
        return cid

    # --- reading state ---
    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(c) for c in self.state.comments.values()
                    if c["repo"] == repo and c["number"] == number]

    @property
    def requests(self) -> list[Recorded]:
        with self.lock:
            return list(self.state.requests)

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method not in ("GET", "HEAD")]

    def comment_json(self, c: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{c['repo']}"
        web = self.base_url.split("/api/v3")[0] if self.prefix else self.base_url
        return {"id": c["id"], "node_id": f"IC_{c['id']}", "url": f"{api}/issues/comments/{c['id']}",
                "html_url": f"{web}/{c['repo']}/pull/{c['number']}#issuecomment-{c['id']}",
                "issue_url": f"{api}/issues/{c['number']}", "body": c["body"],
                "user": {"login": c["user"], "id": 1,
                         "type": "Bot" if c["user"].endswith("[bot]") else "User"},
                "created_at": c["created_at"], "updated_at": c["updated_at"], "author_association": "NONE"}


class _Handler(BaseHTTPRequestHandler):
    double: GitHubDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _send(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"message": message, "documentation_url": _DOCS, "status": str(status)})

    def _serve(self) -> None:
        d = self.double
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        with d.lock:
            d.state.requests.append(Recorded(self.command, path.removeprefix(d.prefix) if d.prefix else path,
                                             query, dict(self.headers.items()), body))
            fail_with = d.state.fail_with
        if fail_with is not None:
            return self._error(fail_with, "Server Error")
        if d.prefix and not path.startswith(d.prefix + "/"):
            return self._error(404, "Not Found")
        path = path.removeprefix(d.prefix)
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        access = d.state.tokens.get(token) if scheme.lower() in ("token", "bearer") else None
        if access is None:
            return self._error(401, "Bad credentials")
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "repos":
            return self._error(404, "Not Found")
        repo = f"{parts[1]}/{parts[2]}"
        rest = parts[3:]
        with d.lock:
            if repo not in d.state.repos:
                return self._error(404, "Not Found")
            if self.command != "GET" and access != "write":
                return self._error(403, "Resource not accessible by integration")
            return self._route(repo, rest, query, body)

    def _route(self, repo: str, rest: list[str], query: dict[str, str], body: Any) -> None:
        d, method = self.double, self.command
        prs = d.state.repos[repo]
        api = f"{d.base_url}/repos/{repo}"
        if method == "GET" and not rest:
            owner = repo.split("/")[0]
            return self._send(200, {"id": 1, "name": repo.split("/")[1], "full_name": repo, "url": api,
                                    "owner": {"login": owner, "id": 2, "type": "Organization"}})
        if len(rest) == 2 and rest[0] in ("issues", "pulls") and method == "GET":
            if not rest[1].isdigit() or int(rest[1]) not in prs:
                return self._error(404, "Not Found")
            n = int(rest[1])
            return self._send(200, {"id": n, "number": n, "state": "open", "title": f"PR {n}",
                                    "url": f"{api}/{rest[0]}/{n}",
                                    "comments_url": f"{api}/issues/{n}/comments",
                                    "pull_request": {"url": f"{api}/pulls/{n}"}})
        if len(rest) == 3 and rest[0] == "issues" and rest[2] == "comments":
            if not rest[1].isdigit() or int(rest[1]) not in prs:
                return self._error(404, "Not Found")
            n = int(rest[1])
            if method == "GET":
                return self._list(repo, n, query)
            if method == "POST":
                if not isinstance(body, dict) or not isinstance(body.get("body"), str):
                    return self._error(422, "Invalid request.\n\n\"body\" wasn't supplied.")
                created_anyway = d.state.bad_gateway_creates.pop(0) if d.state.bad_gateway_creates else None
                if created_anyway is False:
                    return self._error(502, "Bad Gateway")
                cid = d._create(repo, n, body["body"], "github-actions[bot]")
                if created_anyway:
                    return self._error(502, "Bad Gateway")
                data = d.comment_json(d.state.comments[cid])
                return self._send(201, data, {"Location": data["url"]})
        if len(rest) == 3 and rest[:2] == ["issues", "comments"] and method == "PATCH":
            c = d.state.comments.get(int(rest[2])) if rest[2].isdigit() else None
            if c is None or c["repo"] != repo:
                return self._error(404, "Not Found")
            if not isinstance(body, dict) or not isinstance(body.get("body"), str):
                return self._error(422, "Invalid request.\n\n\"body\" wasn't supplied.")
            c["body"] = body["body"]
            c["updated_at"] = "2025-01-02T00:00:00Z"
            return self._send(200, d.comment_json(c))
        return self._error(404, "Not Found")

    def _list(self, repo: str, n: int, query: dict[str, str]) -> None:
        d = self.double
        per_page = min(max(int(query.get("per_page", 30)), 1), 100)
        page = max(int(query.get("page", 1)), 1)
        items = sorted((c for c in d.state.comments.values() if c["repo"] == repo and c["number"] == n),
                       key=lambda c: c["id"])
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page: page * per_page]
        base = f"{d.base_url}/repos/{repo}/issues/{n}/comments"

        def link(p: int, rel: str) -> str:
            return f'<{base}?{urllib.parse.urlencode({"per_page": per_page, "page": p})}>; rel="{rel}"'

        # GitHub sends prev/first only after page 1 and next/last only before the last page.
        rels = []
        if page > 1:
            rels += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            rels += [link(page + 1, "next"), link(last, "last")]
        self._send(200, [d.comment_json(c) for c in chunk], {"Link": ", ".join(rels)} if rels else None)


@pytest.fixture
def github_double() -> Iterator[GitHubDouble]:
    with GitHubDouble() as gh:
        yield gh
