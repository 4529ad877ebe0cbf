"""Reading score inputs from one patient's plain FHIR R4 JSON resources, as of a time `at`.

Every code list is a value set, named by id (`cds_service.terminology`: the files under
`rules/_valuesets/` that rules use too), and a code is in it as `ValueSet.contains` says.

- Observations: the latest in the value set, effective within ``(at - look-back, at]``,
  status final / amended / corrected, with a usable value. Quantities are passed on as
  ``{"value", "unit"}`` (the UCUM code where the system is UCUM) so that unit conversion and the
  plausibility checks happen in one place (`cds_service.scores.inputs`).
- Blood pressure: systolic (`systolic-blood-pressure`) stand-alone or from the components of a
  panel (`blood-pressure`).
- Smoking: the latest `smoking-status` with an answer in `current-smoker` or `non-smoker`.
- Age in whole years from ``Patient.birthDate`` at `at` (`cds_service.patient.age_in_years`);
  sex from ``Patient.gender``; race from the US Core race extension (OMB category).
- Conditions: *active* at `at` (onset on or before `at`, no abatement by then) or *history* (onset
  on or before `at`, any clinical status); refuted / entered-in-error ones never count. A
  condition that is not recorded counts as absent (False).
- Medications: a MedicationRequest or MedicationStatement active at `at` whose drug (inline, or
  the Medication its `medicationReference` points to: `terminology.drug_of`) is coded in the
  value set, which takes the clinical drugs of its ingredients (the ingredient map). Only a drug
  the ingredient map does not know falls back to its text naming one of the set's ingredients
  (`ValueSet.names_in`).

Every helper returns ``(value, source)`` where source is ``"Type/id date"``, or None when the
record has nothing usable.

Provenance: an input is *present* (found in the record), *absent* (the data was read and holds
nothing: a condition not recorded is False) or *unknown*. A record built from data that failed to
load carries `gaps`: resource type → what failed ("Conditions could not be loaded (ReadTimeout)").
For a type with a gap, what is found still counts (a recorded condition is recorded), but what
is not found is `Unknown`, never absent; Observation inputs (the latest in a window) are unknown
whatever was found, as a later value may be the one that failed to load. Medications are read
from MedicationRequests (MedicationStatements add to them when the EHR has them): only a gap in
MedicationRequest makes a medication unknown.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Union

from cds_service.fhirscan import code_index
from cds_service.patient import age_in_years
from cds_service.scores.fhir_json import (
    items,
    obj,
    parse_fhir_datetime,
    quantity,
    status_code,
    string,
)
from cds_service.terminology import (
    RXNORM,
    ValueSet,
    bundled_ingredient_map,
    coded,
    codings_of,
    drug_of,
    medications_by_reference,
    value_set,
    words,
)

__all__ = [
    "OBSERVATION_SETS",
    "RECORD_TYPES",
    "FhirData",
    "Found",
    "PatientRecord",
    "Unknown",
    "load_failure",
    "type_words",
]

Found = tuple[Any, str | None]
# What a score reads its inputs from: the call's resources, or a record already built from them.
FhirData = Union[Sequence[dict[str, Any]], "PatientRecord"]
_USABLE_STATUS = frozenset({"final", "amended", "corrected"})
_UNREAD: Any = object()  # an Observation whose date has not been read yet
_BAD_VERIFICATION = frozenset({"refuted", "entered-in-error"})
_ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
_VOID_MED_STATUS = frozenset({"entered-in-error", "not-taken", "cancelled", "draft"})
# US Core race: the OMB categories the Pooled Cohort Equations' race groups are read from.
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
OMB_WHITE = "2106-3"
OMB_BLACK = "2054-5"  # Black or African American


class Unknown:
    """The value of an input the record cannot tell, and why (what failed to load).

    False in a boolean test, so ``found[0]`` never reads as a positive finding; `FhirInputs.put`
    records it as unknown, and a score with an unknown input is not computable."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unknown) and other.reason == self.reason

    def __hash__(self) -> int:
        return hash(("unknown", self.reason))

    def __repr__(self) -> str:
        return f"Unknown({self.reason!r})"


#: How a resource type is named in a reason ("Conditions could not be loaded").
_TYPE_WORDS = {
    "Patient": "The patient",
    "Observation": "Observations",
    "Condition": "Conditions",
    "MedicationRequest": "Medication requests",
    "MedicationStatement": "Medication statements",
    "Medication": "Medications",
}


def type_words(resource_type: str) -> str:
    """A resource type as a reason names it: "Conditions", "The patient"."""
    return _TYPE_WORDS.get(resource_type, f"{resource_type} resources")


def load_failure(resource_type: str, why: str, *, partial: bool = False) -> str:
    """A gap's reason, worded one way everywhere: "Conditions could not be loaded (why)", or
    "… could be loaded only in part (why)"."""
    verb = "could be loaded only in part" if partial else "could not be loaded"
    return f"{type_words(resource_type)} {verb} ({why})"


def _aware(at: datetime) -> datetime:
    """`at` with a time zone (a naive value is taken as UTC)."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


#: The resource types the scores read: a population job reads only these from a partition
#: (`PatientRecord.of_type` refuses any other, so a score that starts reading one fails its
#: tests until it is listed here).
RECORD_TYPES = frozenset(
    {
        "Patient",
        "Observation",
        "Condition",
        "MedicationRequest",
        "MedicationStatement",
        "Medication",
    }
)

#: The Observation value sets the scores read (`PatientRecord._observations` refuses any other;
#: tests/scores/test_terminology.py checks that each adapter reads only these).
OBSERVATION_SETS = (
    "total-cholesterol",
    "hdl-cholesterol",
    "blood-pressure",  # panels and stand-alone systolic
    "smoking-status",
    "hba1c",
    "bmi",
    "creatinine",
    "respiratory-rate",
    "glasgow-coma-score",
)
# Their codes (any system): the only ones the Observations are indexed by.
_OBSERVATION_CODES = frozenset(
    code for set_id in OBSERVATION_SETS for code in value_set(set_id).bare
)


class PatientRecord:
    """One patient's resources, read as of `at`.

    Build one per call and hand it to every score (`FhirData`): the resources are grouped by
    type once, and usable Observations indexed by code once, for all of them.
    """

    def __init__(
        self,
        resources: Sequence[dict[str, Any]],
        at: datetime,
        gaps: Mapping[str, str] | None = None,
    ) -> None:
        self.at = _aware(at)
        #: Resource type → why its data is incomplete (it failed to load, in whole or in part).
        self.gaps: dict[str, str] = dict(gaps or {})
        self._by_type: dict[str, list[dict[str, Any]]] = {}
        for resource in resources:
            if isinstance(resource, dict):
                self._by_type.setdefault(str(resource.get("resourceType")), []).append(resource)
        self._by_code: dict[str, list[tuple[int, dict[str, Any]]]] | None = None
        # When each usable Observation was made (None: undated), by position, parsed the first
        # time a score asks for its code: a record holds hundreds, the scores read a few codes.
        self._when: dict[int, datetime | None] = {}
        self._coded_conditions: (
            list[tuple[dict[str, Any], list[tuple[str | None, str | None]]]] | None
        ) = None
        self._medications: dict[str, dict[str, Any]] | None = None

    @classmethod
    def grouped(
        cls,
        by_type: Mapping[str, Sequence[dict[str, Any]]],
        at: datetime,
        gaps: Mapping[str, str] | None = None,
    ) -> PatientRecord:
        """A record of resources already grouped by type (each list in the record's order);
        only the types the scores read (RECORD_TYPES) are kept. The lists are read, never
        modified."""
        record = cls((), at, gaps)
        record._by_type = {t: list(by_type[t]) for t in RECORD_TYPES if by_type.get(t)}
        return record

    @classmethod
    def of(cls, data: FhirData, at: datetime) -> PatientRecord:
        """`data` itself when it is a record as of `at`, else a record of its resources."""
        if isinstance(data, PatientRecord):
            if data.at == _aware(at):
                return data
            return cls([r for rs in data._by_type.values() for r in rs], at, data.gaps)
        return cls(data, at)

    def unknown(self, resource_type: str) -> Found | None:
        """``(Unknown(why), None)`` when the type's data has a gap, else None."""
        why = self.gaps.get(resource_type)
        return None if why is None else (Unknown(why), None)

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        unknown = set(types) - RECORD_TYPES
        if unknown:
            raise ValueError(f"{sorted(unknown)} not in RECORD_TYPES: list the type there")
        return [r for t in types for r in self._by_type.get(t, [])]

    @staticmethod
    def source(resource: dict[str, Any], when: Any = None) -> str:
        ref = f"{resource.get('resourceType')}/{resource.get('id')}"
        return f"{ref} {when}" if isinstance(when, str) and when else ref

    # --- Patient ---------------------------------------------------------------------------
    def _patient(self) -> dict[str, Any] | None:
        patients = self.of_type("Patient")
        return patients[0] if patients else None

    def age(self) -> Found | None:
        """Whole years at `at` (`age_in_years`: a partial birth date gives the certain age)."""
        patient = self._patient()
        birth = obj(patient).get("birthDate")
        years = age_in_years(birth, self.at)
        if patient is None:
            return self.unknown("Patient")
        if years is None:
            return None
        return years, self.source(patient, birth)

    def sex(self) -> Found | None:
        patient = self._patient()
        gender = obj(patient).get("gender")
        if patient is None:
            return self.unknown("Patient")
        if gender not in ("male", "female"):
            return None
        return gender, self.source(patient, "gender")

    def race(self) -> Found | None:
        """white / african-american / other from the US Core race OMB categories."""
        patient = self._patient()
        if patient is None:
            return self.unknown("Patient")
        for ext in items(obj(patient).get("extension")):
            if ext.get("url") != US_CORE_RACE:
                continue
            omb = {
                str(obj(sub.get("valueCoding")).get("code"))
                for sub in items(ext.get("extension"))
                if sub.get("url") == "ombCategory"
            }
            src = self.source(patient or {}, "us-core-race")
            if OMB_BLACK in omb:
                return "african-american", src
            if OMB_WHITE in omb:
                return "white", src
            if omb - {"UNK", "ASKU", "None"}:
                return "other", src
        return None

    # --- Observations ----------------------------------------------------------------------
    def _observations(self, value_set_id: str, days: int) -> Iterator[dict[str, Any]]:
        """Usable Observations coded in the value set, in the window, latest first (at the same
        time, the one listed first)."""
        if value_set_id not in OBSERVATION_SETS:
            raise ValueError(f"{value_set_id} not in OBSERVATION_SETS: list the value set there")
        wanted = value_set(value_set_id)
        at = self.at
        start = at - timedelta(days=days)
        index = self._code_index()
        known = self._when  # each Observation's date, read once for every value set
        dated: dict[int, tuple[datetime, int, dict[str, Any]]] = {}
        for code in wanted.bare:
            for position, obs in index.get(code, ()):
                when = known.get(position, _UNREAD)
                if when is _UNREAD:
                    when = known[position] = parse_fhir_datetime(self._effective(obs))
                if when is not None and start < when <= at:
                    dated[position] = (when, -position, obs)
        # (when, -position) decides: positions differ, so the resources are never compared
        for _, _, obs in sorted(dated.values(), reverse=True):
            if coded(obs.get("code"), wanted):  # the code's system too
                yield obs

    def _code_index(self) -> dict[str, list[tuple[int, dict[str, Any]]]]:
        """Usable Observations by each code of OBSERVATION_SETS (any system), as (position,
        resource)."""
        if self._by_code is None:
            observations = self.of_type("Observation")
            self._by_code = code_index(observations, _USABLE_STATUS, _OBSERVATION_CODES)
        return self._by_code

    @staticmethod
    def _effective(obs: dict[str, Any]) -> str | None:
        """The first string of effectiveDateTime, effectiveInstant, effectivePeriod's end and
        start, and issued (each read only when those before are not strings)."""
        value = obs.get("effectiveDateTime")
        if isinstance(value, str):
            return value
        value = obs.get("effectiveInstant")
        if isinstance(value, str):
            return value
        period = obs.get("effectivePeriod")
        if isinstance(period, dict):
            for value in (period.get("end"), period.get("start")):
                if isinstance(value, str):
                    return value
        value = obs.get("issued")
        return value if isinstance(value, str) else None

    def latest_quantity(self, value_set_id: str, days: int) -> Found | None:
        if (unknown := self.unknown("Observation")) is not None:
            return unknown
        for obs in self._observations(value_set_id, days):
            value = quantity(obs.get("valueQuantity"))
            if value is not None:
                return value, self.source(obs, self._effective(obs))
        return None

    def latest_systolic(self, days: int) -> Found | None:
        if (unknown := self.unknown("Observation")) is not None:
            return unknown
        systolic = value_set("systolic-blood-pressure")
        for obs in self._observations("blood-pressure", days):
            if coded(obs.get("code"), systolic):
                value = quantity(obs.get("valueQuantity"))
            else:
                value = next(
                    (
                        quantity(part.get("valueQuantity"))
                        for part in items(obs.get("component"))
                        if coded(part.get("code"), systolic)
                    ),
                    None,
                )
            if value is not None:
                return value, self.source(obs, self._effective(obs))
        return None

    def smoker(self, days: int) -> Found | None:
        """Current smoker (True) or not (False) from the latest known smoking status answer."""
        if (unknown := self.unknown("Observation")) is not None:
            return unknown
        current, not_current = value_set("current-smoker"), value_set("non-smoker")
        for obs in self._observations("smoking-status", days):
            answer = obs.get("valueCodeableConcept")
            if coded(answer, current):
                return True, self.source(obs, self._effective(obs))
            if coded(answer, not_current):
                return False, self.source(obs, self._effective(obs))
        return None

    # --- Conditions and medications --------------------------------------------------------
    def condition(self, value_set_id: str, *, history: bool = False) -> Found:
        """(True, source) when a condition in the value set is active at `at` (or ever, with
        history); (False, None) when none is, or `Unknown` when none is found and the
        conditions failed to load."""
        wanted = value_set(value_set_id)
        contains = wanted.contains
        for cond, codings in self._conditions():
            for system, code in codings:  # a loop, not any(): no generator per condition
                if contains(system, code):
                    break
            else:
                continue
            if status_code(cond.get("verificationStatus")) in _BAD_VERIFICATION:
                continue
            onset_text = cond.get("onsetDateTime") or obj(cond.get("onsetPeriod")).get("start")
            onset_text = onset_text or cond.get("recordedDate")
            onset = parse_fhir_datetime(onset_text)
            if onset is not None and onset > self.at:
                continue
            if not history and not self._active(cond):
                continue
            return True, self.source(cond, onset_text)
        return self.unknown("Condition") or (False, None)

    def _conditions(self) -> list[tuple[dict[str, Any], list[tuple[str | None, str | None]]]]:
        """Each Condition with its codings, read once for every question the scores ask."""
        if self._coded_conditions is None:
            self._coded_conditions = [
                (cond, codings_of(cond.get("code"))) for cond in self.of_type("Condition")
            ]
        return self._coded_conditions

    def _active(self, cond: dict[str, Any]) -> bool:
        abated_text = cond.get("abatementDateTime") or obj(cond.get("abatementPeriod")).get("start")
        abated = parse_fhir_datetime(abated_text)
        if abated is not None:
            return abated > self.at
        status = status_code(cond.get("clinicalStatus"))
        return status is None or status in _ACTIVE_CLINICAL

    def medication(self, value_set_id: str) -> Found:
        """(True, source) when a medication in the value set is active at `at`; `Unknown` when
        none is found and the medication requests failed to load."""
        drugs = value_set(value_set_id)
        for med in self.of_type("MedicationRequest", "MedicationStatement"):
            started = self._med_window(med)
            if started is False or not self._drug_matches(med, drugs):
                continue
            return True, self.source(med, started if isinstance(started, str) else None)
        return self.unknown("MedicationRequest") or (False, None)

    def _med_window(self, med: dict[str, Any]) -> str | bool:
        """The start text (or True) when `med` is active at `at`; False otherwise."""
        if string(med.get("status")) in _VOID_MED_STATUS or med.get("intent") == "proposal":
            return False
        if med.get("resourceType") == "MedicationRequest":
            start_text, period = (
                med.get("authoredOn"),
                obj(med.get("dispenseRequest")).get("validityPeriod"),
            )
        else:
            start_text, period = med.get("effectiveDateTime"), med.get("effectivePeriod")
        period = obj(period)
        start_text = start_text or period.get("start")
        start, end = parse_fhir_datetime(start_text), parse_fhir_datetime(period.get("end"))
        if (start is not None and start > self.at) or (end is not None and end <= self.at):
            return False
        if med.get("status") != "active" and end is None:
            return False
        return start_text if isinstance(start_text, str) else True

    def _drug_matches(self, med: dict[str, Any], drugs: ValueSet) -> bool:
        if self._medications is None:
            self._medications = medications_by_reference(self.of_type("Medication"))
        concept = drug_of(med, self._medications).concept
        if not isinstance(concept, dict):
            return False
        if coded(concept, drugs):
            return True
        if _known_drug(concept):  # its code has answered: the text cannot overrule it
            return False
        texts = [concept.get("text")] + [c.get("display") for c in items(concept.get("coding"))]
        return drugs.names_in(words(" ".join(t for t in texts if isinstance(t, str))))


def _known_drug(concept: dict[str, Any]) -> bool:
    """True when an RxNorm coding of the concept is a drug or ingredient the ingredient map
    knows (so every value set's answer for it is by code)."""
    known = bundled_ingredient_map()
    return any(
        code is not None
        and system in (RXNORM, None)
        and (code in known.drugs or known.is_ingredient(code))
        for system, code in codings_of(concept)
    )
