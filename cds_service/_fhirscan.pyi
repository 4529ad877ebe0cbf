# The native FHIR JSON scans (_fhirscan.c, compiled at install by hatch_build.py); the Python
# versions, with the same answers, are in cds_service/fhirscan.py.
from collections.abc import Callable, Mapping
from typing import Any

_Pair = tuple[str | None, str | None]
_Resource = dict[str, Any]

def entries(data: Any, /) -> list[tuple[_Resource, str | None]]: ...
def group(data: Any, /) -> tuple[dict[str, list[_Resource]], list[tuple[_Resource, str]]]: ...
def code_sets(values: tuple[Any, ...], /) -> tuple[frozenset[_Pair], frozenset[str]]: ...
def codings_of(value: Any, /) -> list[_Pair]: ...
def coded(
    resources: list[_Resource],
    known: dict[int, frozenset[_Pair]],
    loose: dict[int, frozenset[str]],
    compute: Callable[[_Resource], object],
    elements: Mapping[str, tuple[str, ...]],
    skip: frozenset[str],
    codes: frozenset[tuple[str, str]],
    bare: frozenset[str],
    under: Callable[[str | None, str], bool] | None,
    answers: Mapping[tuple[str | None, str], bool] | None,
    /,
) -> list[_Resource]: ...
def code_index(
    observations: list[_Resource], statuses: frozenset[str], wanted: frozenset[str] | None, /
) -> dict[str, list[tuple[int, _Resource]]]: ...
def first_of_each_id(lists: list[list[Any]], /) -> list[Any]: ...
def reports_error(entries: list[Any], /) -> bool: ...
