"""RevisionId for the test AWS, kept as Lambda keeps it: moto 5.2.5 gives functions none at all and never changes
an alias's, so nothing there would refuse a write that names a stale one.

The fault proxy hands each request on a function or an alias to `RevisionIds` (`proxy.guard`), with the way to
forward it to moto. Answers carry a RevisionId derived from what moto holds now (the configuration, or the alias)
and from how many writes went through here, so a change made straight in moto, behind the proxy's back, changes
it as someone else's change would on AWS. A write that names a RevisionId no longer current is refused with 412
PreconditionFailedException before moto sees it. As on Lambda (aws/aws-sdk#377), the answer to an update carries
a RevisionId that is stale once the update has finished (at once, in moto): the next write must name the one a
read returns after the update.

`refused` lists the writes refused, for tests to assert on; the proxy's own record has the requests themselves.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from moto.backends import get_backend

from awsfakes import ACCOUNT, REGION, Recorded, aws_error
from lambdainvoke import FUNCTION_REF, Answer

_FUNCTION = r"^/2015-03-31/functions/(?P<fn>[^/]+)"
# (method, path) -> what the request is: a read or write of a function ($LATEST or a version) or of an alias.
_ROUTES = [(method, re.compile(_FUNCTION + path), kind) for method, path, kind in (
    ("GET", r"$", "get-function"),
    ("GET", r"/configuration$", "read-function"),
    ("PUT", r"/configuration$", "update-function"),
    ("PUT", r"/code$", "update-function"),
    ("GET", r"/versions$", "list-versions"),
    ("POST", r"/versions$", "publish-version"),
    ("GET", r"/aliases$", "list-aliases"),
    ("POST", r"/aliases$", "create-alias"),
    ("GET", r"/aliases/(?P<alias>[^/]+)$", "read-alias"),
    ("PUT", r"/aliases/(?P<alias>[^/]+)$", "update-alias"),
    ("DELETE", r"/aliases/(?P<alias>[^/]+)$", "delete-alias"),
)]
_STALE_MESSAGE = ("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias "
                  "API to retrieve the latest Revision Id")


class RevisionIds:
    """The proxy's guard for RevisionId: (request, forward) -> the answer."""

    def __init__(self) -> None:
        self.refused: list[Recorded] = []
        self._writes: dict[tuple[str, ...], int] = defaultdict(int)  # per function or alias: writes seen
        self._locks: dict[tuple[str, ...], threading.Lock] = defaultdict(threading.Lock)
        self._lock = threading.Lock()

    def __call__(self, rec: Recorded, forward: Callable[[], Answer]) -> Answer:
        for method, pattern, kind in _ROUTES:
            m = pattern.match(rec.path)
            if method == rec.method and m is not None:
                ref = FUNCTION_REF.match(unquote(m["fn"]))
                if ref is None:
                    break
                where = (rec.region or REGION, _account(unquote(m["fn"])), ref["name"])
                alias = unquote(m["alias"]) if "alias" in m.groupdict() else None
                return self._answer(rec, kind, where, alias, forward)
        return forward()

    def _answer(self, rec: Recorded, kind: str, where: tuple[str, str, str], alias: str | None,
                forward: Callable[[], Answer]) -> Answer:
        if kind.startswith(("get-", "read-", "list-")):
            return self._stamped(forward(), kind, where)
        # A write: the check, moto's change and the new RevisionId happen as one, as they do on AWS.
        key = (*where, "alias", alias or _json(rec.body).get("Name", "")) if "alias" in kind else where
        with self._guard(key):
            sent = _json(rec.body).get("RevisionId")
            current = self._alias_revision(where, key[-1]) if "alias" in kind else self._function_revision(where)
            if sent and sent != current:
                self.refused.append(rec)
                error = aws_error(412, "PreconditionFailedException", _STALE_MESSAGE)
                return error["status"], error["headers"], error["body"]
            status, headers, body = forward()
            # Publishing leaves $LATEST as it is, so a retry of a publish whose answer was lost still passes.
            if 200 <= status < 300 and kind != "publish-version":
                with self._lock:
                    self._writes[key] += 1
        if kind == "update-function" and 200 <= status < 300:  # stale as soon as the update has finished
            doc = json.loads(body)
            doc["RevisionId"] = self._function_revision(where, "in progress")
            return status, headers, json.dumps(doc).encode()
        return self._stamped((status, headers, body), kind, where)

    def _guard(self, key: tuple[str, ...]) -> threading.Lock:
        with self._lock:
            return self._locks[key]

    def _stamped(self, answer: Answer, kind: str, where: tuple[str, str, str]) -> Answer:
        """The answer with each function configuration or alias in it carrying its RevisionId."""
        status, headers, body = answer
        if not 200 <= status < 300 or not body:
            return answer

        def function(doc: dict[str, Any]) -> str:
            return self._function_revision(where, version=str(doc.get("Version") or "$LATEST"))

        def alias(doc: dict[str, Any]) -> str:
            return self._alias_revision(where, str(doc.get("Name")))
        stamp: Callable[[dict[str, Any]], None]
        if kind == "get-function":  # {"Configuration": ..., "Code": ...}
            def stamp(doc: dict[str, Any]) -> None:
                doc["Configuration"]["RevisionId"] = function(doc["Configuration"])
        elif kind in ("read-function", "publish-version"):
            def stamp(doc: dict[str, Any]) -> None:
                doc["RevisionId"] = function(doc)
        elif kind == "list-versions":
            def stamp(doc: dict[str, Any]) -> None:
                for version in doc.get("Versions") or []:
                    version["RevisionId"] = function(version)
        elif kind == "list-aliases":
            def stamp(doc: dict[str, Any]) -> None:
                for each in doc.get("Aliases") or []:
                    each["RevisionId"] = alias(each)
        else:  # an alias read or written
            def stamp(doc: dict[str, Any]) -> None:
                doc["RevisionId"] = alias(doc)
        doc = json.loads(body)
        stamp(doc)
        return status, headers, json.dumps(doc).encode()

    # -- RevisionIds from what moto holds -----------------------------------------------------------------------

    def _function_revision(self, where: tuple[str, str, str], flavour: str = "", *, version: str = "$LATEST",
                           ) -> str:
        region, account, name = where
        try:
            config = get_backend("lambda")[account][region].get_function(name, version).get_configuration()
        except Exception:  # no such function or version: moto will say so itself
            return ""
        with self._lock:
            writes = self._writes[where] if version == "$LATEST" else 0
        return _revision(config, writes, flavour)

    def _alias_revision(self, where: tuple[str, str, str], alias: str) -> str:
        region, account, name = where
        try:
            found = get_backend("lambda")[account][region].get_alias(alias, name).to_json()
        except Exception:
            return ""
        found.pop("RevisionId", None)  # moto's own never changes
        with self._lock:
            writes = self._writes[(*where, "alias", alias)]
        return _revision(found, writes)


def _revision(state: dict[str, Any], writes: int, flavour: str = "") -> str:
    digest = hashlib.sha256(json.dumps([state, writes, flavour], sort_keys=True, default=str).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16]))


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _account(ref: str) -> str:
    m = re.match(r"^(?:arn:[\w-]+:lambda:[\w-]+:)?(\d{12}):function:", ref)
    return m.group(1) if m else ACCOUNT
