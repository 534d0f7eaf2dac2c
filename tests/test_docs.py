"""The docs name tests that exist: every ``tests/…py::name`` in docs/ and the README is a test
function (or class) defined in that module, so a renamed or removed test cannot leave a row of
RELIABILITY.md pointing at nothing."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


def references() -> list[tuple[str, str, str]]:
    found = {(doc.name, path, name) for doc in DOCS for path, name in REFERENCE.findall(doc.read_text())}
    return sorted(found)


def test_the_docs_name_tests():
    assert len(references()) > 50  # RELIABILITY.md alone names far more: the pattern still matches


@pytest.mark.parametrize(("doc", "path", "name"), references())
def test_every_test_a_doc_names_exists(doc, path, name):
    source = ROOT / path
    assert source.is_file(), f"{doc} names {path}, which does not exist"
    assert re.search(rf"^(async def|def|class) {name}\b", source.read_text(), re.M), f"{doc} names {path}::{name}"
