"""Every pattern and digit test in the code is ASCII-only, or says why not.

Python's `\\d`, `\\w`, `\\s` and `\\b` match Unicode by default, and `str.isdigit()` and `int()` take Arabic-Indic
and other digits: `us-east-١` once passed the region rule and twelve Arabic-Indic digits passed as an account.
The walk below finds every `re` call and every digit test in entrypoint/ by its syntax tree, so a new one
without re.ASCII fails here until it gets the flag or a reason in UNICODE_ON_PURPOSE.
"""

from __future__ import annotations

import ast
import importlib
import re

import pytest

from conftest import ROOT

PACKAGE = ROOT / "entrypoint" / "go_arm_lambda"
RE_CALLS = {"compile", "match", "fullmatch", "search", "split", "sub", "subn", "findall", "finditer"}
DIGIT_TESTS = {"isdigit", "isdecimal", "isnumeric"}
# Escapes whose meaning depends on Unicode (without re.ASCII); `.` and explicit [0-9] ranges do not.
_UNICODE_CLASS = re.compile(r"\\[dDwWsSbB]", re.ASCII)

# (module, pattern source or call) -> why it is Unicode-aware, or built at run time, on purpose.
UNICODE_ON_PURPOSE = {
    ("limits", r"\s"): "Lambda refuses a Handler with any whitespace, Unicode's included",
    ("steps", r"[^\w\s+\-=.:/@]"): "AWS tag values may hold letters of any script",
    ("inputs", "re.compile(value)"): "the user's own --check-expect pattern, in Python's syntax as documented",
    ("rollout", "re.search(step.expect, ...)"): "the user's own --check-expect pattern, as documented",
    ("limits", "alias.isdigit()"): "only after _NAME, an ASCII pattern, matched the alias",
}


def _literal(node: ast.expr) -> str | bytes | None:
    """A pattern's text when the source spells it out (an f-string's literal parts); None when built."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return None


def _names_ascii(nodes: list[ast.expr]) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr in ("ASCII", "A") for node in nodes for n in ast.walk(node))


def _guarded_by_isascii(call: ast.Call, parents: dict[ast.AST, ast.AST]) -> bool:
    """`x.isascii() and x.isdigit()`: the same object tested for ASCII in the same `and`."""
    target = ast.dump(call.func.value) if isinstance(call.func, ast.Attribute) else None
    node: ast.AST | None = parents.get(call)
    while node is not None and not isinstance(node, ast.stmt):
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            for value in node.values:
                if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                        and value.func.attr == "isascii" and ast.dump(value.func.value) == target):
                    return True
        node = parents.get(node)
    return False


def unicode_aware(module: str, source: str) -> list[str]:
    """Each `re` call with a Unicode-sensitive class and no re.ASCII, each pattern built at run time, and each
    digit test without an isascii() beside it, that UNICODE_ON_PURPOSE does not explain."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        func = node.func
        if isinstance(func.value, ast.Name) and func.value.id == "re" and func.attr in RE_CALLS and node.args:
            pattern = _literal(node.args[0])
            if _names_ascii([*node.args[1:], *(k.value for k in node.keywords)]):
                continue
            if pattern is None:  # built at run time: whatever it holds, matched the Unicode way
                key = f"re.{func.attr}({ast.unparse(node.args[0])}{', ...' if len(node.args) > 1 else ''})"
            elif isinstance(pattern, bytes) or not _UNICODE_CLASS.search(pattern):
                continue  # bytes patterns are ASCII already
            else:
                key = pattern
        elif func.attr in DIGIT_TESTS and not node.args and not _guarded_by_isascii(node, parents):
            key = f"{ast.unparse(func.value)}.{func.attr}()"
        else:
            continue
        if (module, key) not in UNICODE_ON_PURPOSE:
            found.append(f"{module}.py:{node.lineno}: {key}")
    return found


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def test_every_pattern_and_digit_test_in_the_code_is_ascii_or_says_why() -> None:
    found = [line for m in MODULES for line in unicode_aware(m, (PACKAGE / f"{m}.py").read_text(encoding="utf-8"))]
    assert found == [], "add re.ASCII (or isascii()), or a reason in UNICODE_ON_PURPOSE:\n" + "\n".join(found)


def test_every_reason_still_has_its_pattern() -> None:
    """A reason whose pattern is gone would let a new one of the same text through unexplained."""
    for module, key in UNICODE_ON_PURPOSE:
        source = (PACKAGE / f"{module}.py").read_text(encoding="utf-8")
        saved = dict(UNICODE_ON_PURPOSE)
        try:
            del UNICODE_ON_PURPOSE[(module, key)]
            assert any(line.endswith(f": {key}") for line in unicode_aware(module, source)), (module, key)
        finally:
            UNICODE_ON_PURPOSE.clear()
            UNICODE_ON_PURPOSE.update(saved)


@pytest.mark.parametrize(("snippet", "caught"), [
    ('import re\nX = re.compile(r"^\\d{12}$")\n', True),
    ('import re\nX = re.compile(r"^\\d{12}$", re.ASCII)\n', False),
    ('import re\nX = re.compile(rb"^\\d{12}$")\n', False),
    ('import re\ndef f(s):\n    return re.match(rf"^{s}-\\w+$", s, re.MULTILINE)\n', True),
    ('import re\ndef f(s):\n    return re.split(r"[,\\s]+", s, flags=re.MULTILINE | re.A)\n', False),
    ('import re\ndef f(p, s):\n    return re.search(p, s)\n', True),
    ('def f(s):\n    return s.isdigit() and int(s)\n', True),
    ('def f(s):\n    return s.isascii() and s.isdigit() and int(s)\n', False),
    ('def f(s, t):\n    return t.isascii() and s.isdigit()\n', True),
])
def test_the_walk_catches_what_it_is_for(snippet: str, caught: bool) -> None:
    assert bool(unicode_aware("sample", snippet)) == caught


def test_every_module_level_pattern_is_ascii_or_explained() -> None:
    """The same, from the compiled patterns themselves (whatever built them)."""
    for module in MODULES:
        if module == "__main__":
            continue
        mod = importlib.import_module(f"go_arm_lambda.{module}")
        for name, value in vars(mod).items():
            if (isinstance(value, re.Pattern) and isinstance(value.pattern, str) and not value.flags & re.ASCII
                    and _UNICODE_CLASS.search(value.pattern)):
                assert (module, value.pattern) in UNICODE_ON_PURPOSE, f"{module}.{name}: {value.pattern}"


def test_the_rules_that_once_took_other_digits_refuse_them_now() -> None:
    from go_arm_lambda import config, inputs, limits
    from go_arm_lambda.errors import UsageError

    arabic = "١٢٣٤٥٦٧٨٩٠١٢"  # twelve Arabic-Indic digits, which int() reads as 123456789012
    for check, value in ((limits.check_layer_principal, arabic), (limits.check_region, "us-east-١"),
                         (limits.check_layer_principal, f"arn:aws:iam::{arabic}:root"),
                         (limits.check_function_name, f"arn:aws:lambda:eu-west-1:{arabic}:function:x"),
                         (limits.check_layer_name, f"arn:aws:lambda:eu-west-1:{arabic}:layer:x"),
                         (limits.check_goarm64, "v٨.٠")):
        with pytest.raises(UsageError):
            check(value, config.say) if check is limits.check_function_name else check(value)  # type: ignore[operator]
    for convert, value in ((inputs.count, "٨"), (inputs.seconds, "١٠"), (inputs.count, "²")):
        with pytest.raises(UsageError, match="is not a"):
            convert(value, "--x")
