"""Expected values as subsets of actual ones; the card diff."""

from __future__ import annotations

from cds_service.rules.testing.matching import cards_diff, subset_mismatches


def test_subset_matching_is_type_strict() -> None:
    assert subset_mismatches({"a": 1}, {"a": 1.0, "b": 2}, "x") == []
    assert subset_mismatches({"a": True}, {"a": 1}, "x") == ["x.a: expected true, got 1"]
    assert subset_mismatches({"a": "1"}, {"a": 1}, "x") == ['x.a: expected "1", got 1']
    assert subset_mismatches([{"a": 1}], [{"a": 1, "b": 2}], "x") == []
    assert subset_mismatches({"a": {"b": 1}}, {}, "x") == [
        'x.a: expected {"b": 1}, got nothing (absent)'
    ]


def test_the_card_diff_leaves_out_unexpected_keys_and_shows_extra_cards_whole() -> None:
    actual = [
        {"uuid": "u1", "summary": "A", "indicator": "info"},
        {"uuid": "u2", "summary": "B", "indicator": "warning"},
    ]
    assert cards_diff([{"summary": "A"}, {"summary": "B"}], actual) == ""
    diff = cards_diff([{"summary": "A"}], actual).splitlines()
    assert diff[:2] == ["--- expected cards", "+++ actual cards (keys not expected left out)"]
    assert '+    "indicator": "warning",' in diff
    assert '+    "indicator": "info",' not in diff  # not expected of the first card
    assert not any("uuid" in line for line in diff)
