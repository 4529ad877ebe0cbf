"""NDJSON reading against the real fixtures: good lines, bad lines, blank lines, empty files."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest

from cds_service.bulk.errors import BulkError
from cds_service.bulk.ndjson import (
    NdjsonItem,
    NdjsonProblem,
    NdjsonResource,
    iter_lines,
    iter_ndjson_dir,
    iter_ndjson_file,
    iter_ndjson_stream,
    list_ndjson_files,
    read_ndjson_dir,
    read_ndjson_file,
    read_ndjson_stream,
)
from tests.bulk.fakes import MOCKS, SAMPLE_10


async def _collect(items: AsyncIterator[NdjsonItem]) -> list[NdjsonItem]:
    return [item async for item in items]


def read_file(path: Path, **kwargs: int) -> list[NdjsonItem]:
    return asyncio.run(_collect(read_ndjson_file(path, **kwargs)))


def read_dir(path: Path, **kwargs: object) -> list[NdjsonItem]:
    return asyncio.run(_collect(read_ndjson_dir(path, **kwargs)))  # type: ignore[arg-type]


def problems(items: list[NdjsonItem]) -> list[NdjsonProblem]:
    return [i for i in items if isinstance(i, NdjsonProblem)]


def resources(items: list[NdjsonItem]) -> list[NdjsonResource]:
    return [i for i in items if isinstance(i, NdjsonResource)]


def test_real_export_directory_reads_every_resource_and_skips_the_export_log() -> None:
    items = read_dir(SAMPLE_10)
    assert problems(items) == []
    found = resources(items)
    expected = sum(
        len(p.read_bytes().splitlines())
        for p in SAMPLE_10.glob("*.ndjson")
        if p.name != "log.ndjson"
    )
    assert len(found) == expected
    patients = [r for r in found if r.resource_type == "Patient"]
    assert len(patients) == 13
    assert patients[0].resource["id"] == "129c6ac7-8d06-89de-ad63-0204a93e76c3"
    assert patients[0].source == str(SAMPLE_10 / "Patient.000.ndjson")
    assert [p.line for p in patients] == list(range(1, 14))
    # files come in sorted order: AllergyIntolerance first, Procedure last
    assert found[0].resource_type == "AllergyIntolerance"
    assert found[-1].resource_type == "Procedure"
    assert all(not r.source.endswith("log.ndjson") for r in found)


def test_the_export_log_read_explicitly_gives_one_problem_per_line() -> None:
    items = read_file(SAMPLE_10 / "log.ndjson")
    assert [(p.line, p.reason, p.kind) for p in problems(items)] == [
        (n, "no resourceType", "line") for n in (1, 2, 3, 4)
    ]
    names = [p.name for p in list_ndjson_files(SAMPLE_10, skip_names=())]
    assert "log.ndjson" in names


def test_a_broken_line_is_reported_with_file_and_line_and_reading_goes_on() -> None:
    path = MOCKS / "bad-ndjson" / "sample.2.ndjson"
    items = read_file(path)
    assert len(items) == 2
    first, second = items
    assert isinstance(first, NdjsonProblem) and first.reason == "no resourceType"
    assert isinstance(second, NdjsonProblem)
    assert (second.source, second.line, second.kind) == (str(path), 2, "line")
    assert second.reason.startswith("invalid JSON")


def test_blank_lines_are_skipped_but_counted() -> None:
    items = read_file(MOCKS / "dirty.ndjson")
    # lines 3, 7, 9 and 10 hold JSON objects (without resourceType); the rest are blank
    assert [i.line for i in items] == [3, 7, 9, 10]
    assert all(isinstance(i, NdjsonProblem) and i.reason == "no resourceType" for i in items)


def test_an_empty_file_yields_nothing() -> None:
    assert read_file(MOCKS / "empty.ndjson") == []


def test_a_directory_reads_its_files_in_sorted_order_without_recursing() -> None:
    items = read_dir(MOCKS / "multi-ndjson")
    assert [(Path(i.source).name, i.line) for i in items] == [
        ("sample.1.ndjson", 1),
        ("sample.1.ndjson", 2),
        ("sample.2.ndjson", 1),
        ("sample.2.ndjson", 2),
    ]
    top = [p.name for p in list_ndjson_files(MOCKS)]
    assert top == sorted(top) and "sample.1.ndjson" in top
    assert not any("/" in name for name in top)
    nested = [p.relative_to(MOCKS).as_posix() for p in list_ndjson_files(MOCKS, recursive=True)]
    assert "bad-ndjson/sample.2.ndjson" in nested and "multi-ndjson/sample.1.ndjson" in nested


def test_real_fhir_lines_from_the_mocks_are_resources() -> None:
    items = read_file(MOCKS / "immunization.3.ndjson")
    assert len(items) == 30
    assert {i.resource_type for i in resources(items)} == {"Immunization"}


def test_not_an_object_and_odd_resource_types_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "odd.ndjson"
    path.write_bytes(
        b'\xef\xbb\xbf{"resourceType":"Patient","id":"bom"}\r\n'
        b"[1, 2]\n"
        b'"text"\n'
        b"42\n"
        b'{"resourceType": 7}\n'
        b'{"resourceType": ""}\n'
        b"\xff\xfe not utf-8\n"
        b'{"resourceType":"Patient","id":"deep","extension":' + b"[" * 70 + b"]" * 70 + b"}\n"
        b'{"resourceType":"Patient","id":"last"}'  # no final newline
    )
    items = read_file(path)
    assert isinstance(items[0], NdjsonResource) and items[0].resource["id"] == "bom"
    reasons = [(p.line, p.reason.split(" (")[0]) for p in problems(items)]
    assert reasons == [
        (2, "not a JSON object but an array"),
        (3, "not a JSON object but a string"),
        (4, "not a JSON object but a number"),
        (5, "no resourceType"),
        (6, "no resourceType"),
        (7, "invalid JSON"),
        (8, "nested deeper than 64 levels; skipped"),  # the scores' walkers recurse
    ]
    assert isinstance(items[-1], NdjsonResource) and items[-1].line == 9


def test_unicode_line_separators_inside_strings_do_not_split_a_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.ndjson"
    text = '{"resourceType":"Observation","id":"o1","note":[{"text":"a\u2028b\u0085c\u2029d"}]}\n'
    path.write_text(text + '{"resourceType":"Observation","id":"o2"}\n', encoding="utf-8")
    items = read_file(path)
    assert [(i.line, type(i).__name__) for i in items] == [
        (1, "NdjsonResource"),
        (2, "NdjsonResource"),
    ]
    first = items[0]
    assert isinstance(first, NdjsonResource)
    assert first.resource["note"][0]["text"] == "a\u2028b\u0085c\u2029d"


def test_gzip_files_are_read(tmp_path: Path) -> None:
    source = SAMPLE_10 / "Patient.000.ndjson"
    path = tmp_path / "Patient.000.ndjson.gz"
    path.write_bytes(gzip.compress(source.read_bytes()))
    items = read_file(path)
    assert len(resources(items)) == 13 and problems(items) == []


def test_a_corrupt_gzip_file_is_one_file_problem(tmp_path: Path) -> None:
    path = tmp_path / "broken.ndjson.gz"
    path.write_bytes(b"this is not gzip data\n")
    items = read_file(path)
    assert len(items) == 1
    problem = items[0]
    assert isinstance(problem, NdjsonProblem) and problem.kind == "file"
    assert "cannot read the file" in problem.reason


def test_an_unreadable_file_is_a_file_problem(tmp_path: Path) -> None:
    items = read_file(tmp_path / "missing.ndjson")
    assert len(items) == 1 and isinstance(items[0], NdjsonProblem)
    assert (items[0].line, items[0].kind) == (0, "file")


def test_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(BulkError, match="not a directory"):
        read_dir(tmp_path / "nope")


def test_an_overlong_line_is_skipped_without_buffering_it(tmp_path: Path) -> None:
    path = tmp_path / "long.ndjson"
    long_line = b'{"resourceType":"Binary","data":"' + b"A" * 5000 + b'"}\n'
    path.write_bytes(b'{"resourceType":"Patient","id":"p"}\n' + long_line + long_line.rstrip())
    items = read_file(path, max_line_bytes=1000)
    assert isinstance(items[0], NdjsonResource)
    assert [(p.line, p.reason) for p in problems(items)] == [
        (2, "line is longer than the limit; skipped"),
        (3, "line is longer than the limit; skipped"),
    ]


def test_lines_split_across_chunks_are_joined() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for piece in (
            b'{"resourceType":"Pa',
            b'tient","id":"1"}\r',
            b"\n\n",
            b'{"resourceType"',
            b':"X"}',
        ):
            yield piece

    async def run() -> list[tuple[int, bytes | None]]:
        return [pair async for pair in iter_lines(chunks())]

    assert asyncio.run(run()) == [
        (1, b'{"resourceType":"Patient","id":"1"}\r'),
        (2, b""),
        (3, b'{"resourceType":"X"}'),
    ]

    async def parsed() -> list[NdjsonItem]:
        return [i async for i in read_ndjson_stream(chunks(), "memory")]

    items = asyncio.run(parsed())
    assert [(i.source, i.line) for i in items] == [("memory", 1), ("memory", 3)]


def test_stopping_early_closes_the_file() -> None:
    async def first_then_stop() -> NdjsonItem:
        async with aclosing(read_ndjson_dir(SAMPLE_10)) as items:
            async for item in items:
                return item
        raise AssertionError("no items")

    item = asyncio.run(first_then_stop())
    assert isinstance(item, NdjsonResource) and item.line == 1


# The synchronous readers (the population engine's partitioning) share the splitter and parser.


@pytest.mark.parametrize("directory", [SAMPLE_10, MOCKS])
def test_the_synchronous_reader_gives_what_the_async_one_does(directory: Path) -> None:
    assert list(iter_ndjson_dir(directory)) == read_dir(directory)


def test_the_synchronous_reader_reports_a_corrupt_gzip_file_and_goes_on(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson.gz").write_bytes(gzip.compress(b'{"resourceType":"Patient"}\n')[:-6])
    (tmp_path / "b.ndjson").write_bytes(b'{"resourceType":"Patient","id":"b"}\n')
    items = list(iter_ndjson_dir(tmp_path))
    assert isinstance(items[0], NdjsonProblem) and items[0].kind == "file"
    assert items[0].source == str(tmp_path / "a.ndjson.gz")
    assert isinstance(items[-1], NdjsonResource) and items[-1].resource["id"] == "b"
    missing = list(iter_ndjson_file(tmp_path / "missing.ndjson"))
    assert [(p.line, p.kind) for p in problems(missing)] == [(0, "file")]


def test_the_synchronous_stream_joins_lines_across_chunks_and_drops_overlong_ones() -> None:
    chunks = [b'{"resourceType":"Pa', b'tient"}\n{"resourceType":"', b"X" * 50, b'"}\n', b"[1]"]
    items = list(iter_ndjson_stream(chunks, "memory", max_line_bytes=40))
    assert [(type(i).__name__, i.line) for i in items] == [
        ("NdjsonResource", 1),
        ("NdjsonProblem", 2),
        ("NdjsonProblem", 3),
    ]
    assert [p.reason for p in problems(items)] == [
        "line is longer than the limit; skipped",
        "not a JSON object but an array",
    ]
