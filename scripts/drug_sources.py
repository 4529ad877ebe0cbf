"""The public value set expansions the drug value sets and the ingredient map are built from.

Each source is a public repository at a pinned commit, read with `git show <commit>:<path>` from a
local copy (`--mirrors DIR` holds `<owner>+<name>/repo`, as the session mirrors have it, or a
plain clone `<owner>+<name>`). Nothing is downloaded: make the copies first, e.g.
`git clone https://github.com/HL7/PDDI-CDS DIR/HL7+PDDI-CDS && git -C … checkout <commit>`.

- canvas-medical/canvas-plugins (MIT): VSAC expansions (eCQM Update 2025-05-08) as Python
  classes, each code's display in a comment;
- cqframework/ecqm-content-qicore-2025 (CC0): VSAC expansions of the 2025 eCQMs as FHIR
  ValueSets (NHSN's include branded drugs);
- cqframework/opioid-cds-r4 (CC0): the CDC opioid prescribing guideline's value sets (2025-02),
  branded drugs included;
- HL7/PDDI-CDS (CC0): the drug-drug interaction IG's per-drug value sets (RxNorm 2018-07),
  branded drugs included.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SOURCES", "Expansion", "Source", "read_source"]

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
_FHIR = {"f": "http://hl7.org/fhir"}


@dataclass(frozen=True, slots=True)
class Source:
    """A public repository at a commit and the files of it that hold value sets."""

    repo: str  # owner/name
    commit: str
    licence: str
    kind: str  # canvas (Python classes) | fhir (FHIR JSON or XML ValueSets, Bundles of them)
    paths: tuple[str, ...]  # files, or folders whose files are all read

    @property
    def short(self) -> str:
        return f"{self.repo}@{self.commit[:7]}"


@dataclass(slots=True)
class Expansion:
    """The RxNorm codes (with displays) of one value set of a source."""

    source: Source
    path: str
    name: str
    oid: str | None = None  # VSAC OID, when the set is a VSAC one
    url: str | None = None
    version: str | None = None  # definition version
    date: str | None = None  # expansion version, date or timestamp
    codes: dict[str, str] = field(default_factory=dict)  # RxCUI → display

    def cite(self) -> str:
        """One line naming the set and where it was read."""
        what = f'"{self.name}"'
        if self.oid:
            what += f" (VSAC {self.oid}"
            what += f", definition {self.version}" if self.version else ""
            what += f", expansion {self.date}" if self.date else ""
            what += ")"
        elif self.date:
            what += f" ({self.date})"
        return f"{what}: {self.source.short} {self.path} ({self.source.licence})"


SOURCES: tuple[Source, ...] = (
    Source(
        "canvas-medical/canvas-plugins",
        "344f0bcb924b2be7ffafb5ac7edf19d475704259",
        "MIT",
        "canvas",
        (
            "canvas_sdk/value_set/v2026/medication.py",
            "canvas_sdk/value_set/v2026/allergy.py",
        ),
    ),
    Source(
        "cqframework/ecqm-content-qicore-2025",
        "db5a7e143304b19b70cbf6a89e5ebeab9e40df61",
        "CC0-1.0",
        "fhir",
        (
            "input/vocabulary/valueset/external",
            "bundles/measure/NHSNGlycemicControlHypoglycemiaInitialPopulation/"
            "NHSNGlycemicControlHypoglycemiaInitialPopulation-files/"
            "valuesets-NHSNGlycemicControlHypoglycemiaInitialPopulation-bundle.json",
        ),
    ),
    Source(
        "cqframework/opioid-cds-r4",
        "b29bdcbf6db6f3de26486dbc3820572ee9a78b89",
        "CC0-1.0",
        "fhir",
        ("input/vocabulary/valueset",),
    ),
    Source(
        "HL7/PDDI-CDS",
        "018be88010175fa37e818c27c2925a6767273870",
        "CC0-1.0",
        "fhir",
        ("input/vocabulary", "input/images/artifacts/warfarin-nsaids/valueset-bundle.xml"),
    ),
)


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True).stdout


def _local(mirrors: Path, source: Source) -> Path:
    owner, name = source.repo.split("/")
    for candidate in (mirrors / f"{owner}+{name}" / "repo", mirrors / f"{owner}+{name}"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no copy of {source.repo} under {mirrors} (see the module docstring)")


def _files(local: Path, source: Source) -> Iterator[str]:
    listed = _git(local, "ls-tree", "-r", "--name-only", source.commit).decode().splitlines()
    for wanted in source.paths:
        for path in listed:
            inside = path == wanted or path.startswith(wanted.rstrip("/") + "/")
            if inside and path.endswith((".json", ".xml", ".py")) and "example" not in path:
                yield path


def _canvas(source: Source, path: str, text: str) -> Iterator[Expansion]:
    """VSAC value sets as canvas-plugins writes them: a class per set, `RXNORM = {"code",  #
    display …}`."""
    lines = text.splitlines()
    for node in ast.parse(text).body:
        if not isinstance(node, ast.ClassDef):
            continue
        attributes: dict[str, str] = {}
        codes: dict[str, str] = {}
        for statement in node.body:
            if not isinstance(statement, ast.Assign) or not isinstance(
                statement.targets[0], ast.Name
            ):
                continue
            target = statement.targets[0].id
            value = statement.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                attributes[target] = value.value
            elif target == "RXNORM" and isinstance(value, ast.Set):
                for element in value.elts:
                    if isinstance(element, ast.Constant) and isinstance(element.value, str):
                        comment = re.search(r"#\s*(.+?)\s*$", lines[element.lineno - 1])
                        codes[element.value] = comment.group(1) if comment else ""
        if codes:
            yield Expansion(
                source,
                path,
                attributes.get("VALUE_SET_NAME", node.name),
                attributes.get("OID"),
                None,
                attributes.get("DEFINITION_VERSION"),
                attributes.get("EXPANSION_VERSION"),
                codes,
            )


def _oid(url: str | None) -> str | None:
    found = re.search(r"(\d+(?:\.\d+){5,})$", url or "")
    return found.group(1) if found else None


def _json_sets(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, dict):
        if data.get("resourceType") == "ValueSet":
            yield data
        for entry in data.get("entry") or [] if data.get("resourceType") == "Bundle" else []:
            yield from _json_sets(entry.get("resource"))


def _from_json(source: Source, path: str, value_set: dict[str, Any]) -> Expansion:
    codes: dict[str, str] = {}
    for include in (value_set.get("compose") or {}).get("include") or []:
        if include.get("system") == RXNORM:
            for concept in include.get("concept") or []:
                codes[concept["code"]] = concept.get("display") or ""
    pending = list((value_set.get("expansion") or {}).get("contains") or [])
    while pending:
        item = pending.pop()
        pending.extend(item.get("contains") or [])
        if item.get("system") == RXNORM and item.get("code"):
            codes[item["code"]] = item.get("display") or codes.get(item["code"], "")
    url = value_set.get("url")
    expansion = value_set.get("expansion") or {}
    return Expansion(
        source,
        path,
        value_set.get("title") or value_set.get("name") or value_set.get("id") or path,
        _oid(url),
        url,
        value_set.get("version"),
        expansion.get("timestamp") or value_set.get("date"),
        codes,
    )


def _value(element: ET.Element, tag: str) -> str | None:
    found = element.find(f"f:{tag}", _FHIR)
    return None if found is None else found.get("value")


def _from_xml(source: Source, path: str, value_set: ET.Element) -> Expansion:
    codes: dict[str, str] = {}
    for include in value_set.iterfind("f:compose/f:include", _FHIR):
        if _value(include, "system") == RXNORM:
            for concept in include.iterfind("f:concept", _FHIR):
                code = _value(concept, "code")
                if code:
                    codes[code] = _value(concept, "display") or ""
    url = _value(value_set, "url")
    return Expansion(
        source,
        path,
        _value(value_set, "title") or _value(value_set, "name") or path,
        _oid(url),
        url,
        _value(value_set, "version"),
        _value(value_set, "date"),
        codes,
    )


def read_source(mirrors: Path, source: Source) -> list[Expansion]:
    """Every value set of the source that has RxNorm codes."""
    local = _local(mirrors, source)
    found: list[Expansion] = []
    for path in _files(local, source):
        raw = _git(local, "show", f"{source.commit}:{path}")
        if source.kind == "canvas":
            found.extend(_canvas(source, path, raw.decode("utf-8")))
        elif path.endswith(".json"):
            data = json.loads(raw)
            found.extend(_from_json(source, path, vs) for vs in _json_sets(data))
        else:
            root = ET.fromstring(raw)
            sets = [root] if root.tag.endswith("ValueSet") else []
            sets += list(root.iterfind(".//f:ValueSet", _FHIR))
            found.extend(_from_xml(source, path, vs) for vs in sets)
    return [e for e in found if e.codes]
