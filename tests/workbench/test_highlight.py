"""The YAML shown on rule pages: coloured, never changed (every bundled rule and test file, and
random text, come back exactly once the tags are removed)."""

from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st

from cds_service.config import default_rules_dir
from cds_service.workbench.highlight import highlight_yaml

TAG = re.compile(r"</?span[^>]*>")
FILES = sorted(default_rules_dir().rglob("*.yaml"))


def _text(lines: list[str]) -> str:
    return "\n".join(html.unescape(TAG.sub("", line)) for line in lines)


def test_every_bundled_file_comes_back_unchanged() -> None:
    assert len(FILES) > 60
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        assert _text(highlight_yaml(text)) == text, path


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_any_text_comes_back_unchanged_and_escaped(text: str) -> None:
    lines = highlight_yaml(text)
    assert _text(lines) == text
    for line in lines:
        assert "<" not in TAG.sub("", line)  # every '<' of the input is escaped


def test_what_an_author_scans_for_is_coloured() -> None:
    [key, comment, string, number, timestamp] = highlight_yaml(
        'id: statin\n# a comment\ntitle: "Quoted"\nversion: 2\nnow: 2019-10-10T10:00:00Z'
    )
    assert '<span class="y-key">id</span>' in key
    assert comment == '<span class="y-comment"># a comment</span>'
    assert '<span class="y-string">"Quoted"</span>' in string
    assert '<span class="y-number">2</span>' in number
    assert "y-number" not in timestamp  # a date-time is not a number
