"""The built-in CDS services: registration, a firing and a silent case each, odd FHIR shapes."""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cds_service.exceptions import PreconditionFailed
from cds_service.prefetch.templates import check_template
from cds_service.prefetch.types import PrefetchOutcome
from cds_service.services.builtin import builtin_services
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from cds_service.wire.contexts import HOOKS
from cds_service.wire.request import HookRequest
from cds_service.wire.response import Card

FIXTURES = (
    Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "cds-hooks" / "hooks-library"
)
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
AMOXICILLIN = "617993"  # the drug of the official order-select / order-sign examples

SERVICES = {service.id: service for service in builtin_services()}


def official(hook: str, number: str = "01") -> dict[str, Any]:
    """The context of an official hook-library example."""
    path = FIXTURES / f"{hook}__{number}__context-{hook}.json"
    context: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["context"]
    return context


def make_call(
    hook: str,
    context: Mapping[str, Any],
    prefetch: Mapping[str, dict[str, Any] | None] | None = None,
    *,
    unavailable: Iterable[str] = (),
    incomplete: Iterable[str] = (),
) -> HookCall:
    prefetch = dict(prefetch or {})
    request = HookRequest.model_validate(
        {
            "hook": hook,
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": dict(context),
            "prefetch": prefetch or None,
        }
    )
    outcomes = {
        key: PrefetchOutcome(key, data, "prefetch", complete=key not in set(incomplete))
        for key, data in prefetch.items()
    }
    outcomes |= {key: PrefetchOutcome(key, None, "unavailable") for key in unavailable}
    return HookCall(
        request=request,
        context=HOOKS[hook].context.model_validate(context),
        prefetch=outcomes,
        now=NOW,
    )


def evaluate(service: ServiceDefinition, call: HookCall) -> ServiceResult:
    async def call_it() -> ServiceResult:
        return await service.evaluate(call)

    return asyncio.run(call_it())


def run(service_id: str, call: HookCall) -> list[Card]:
    result = evaluate(SERVICES[service_id], call)
    assert isinstance(result, ServiceResult)
    for card in result.cards:
        card.wire()  # every card serialises to conformant JSON
        assert card.source.label.startswith("cds-service built-in: ")
        assert len(card.summary) < 140
    return result.cards


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def med_request(
    ident: str, code: str | None = AMOXICILLIN, *, status: str = "active", **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": ident,
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/1288992"},
    }
    if code is not None:
        resource["medicationCodeableConcept"] = {
            "coding": [{"system": RXNORM, "code": code, "display": f"Drug {code}"}]
        }
    return resource | extra


# --- registration ---------------------------------------------------------------------------


def test_builtin_services_are_well_formed() -> None:
    services = builtin_services()
    assert [s.id for s in services] == [
        "allergy-documentation",
        "duplicate-therapy",
        "appointment-conflict",
        "discharge-medication-review",
        "order-dispatch-check",
        "duplicate-record-check",
    ]
    hooks = {h for s in services for h in s.hooks}
    # patient-view is left to the rule services: no built-in reminder on every chart opening.
    retired = {"medication-prescribe", "order-review", "medication-verify"}
    assert hooks == set(HOOKS) - retired - {"patient-view"}
    for service in services:
        assert inspect.iscoroutinefunction(service.evaluate)
        assert service.title and service.description
        assert set(service.hooks) <= set(HOOKS)
        for spec in service.prefetch.values():
            check_template(spec.template)
        for hook, keys in (service.prefetch_by_hook or {}).items():
            assert hook in service.hooks
            assert set(keys) <= set(service.prefetch)


def test_prefetch_narrowed_per_hook() -> None:
    service = SERVICES["duplicate-record-check"]
    assert list(service.prefetch_for("allergyintolerance-create")) == ["allergies"]
    assert list(service.prefetch_for("problem-list-item-create")) == ["conditions"]
    assert SERVICES["discharge-medication-review"].prefetch["activeMedications"].required


def _official_examples() -> list[tuple[ServiceDefinition, str, dict[str, Any]]]:
    cases = []
    for service in builtin_services():
        for hook in service.hooks:
            for path in sorted(FIXTURES.glob(f"{hook}__*.json")):
                context = json.loads(path.read_text(encoding="utf-8"))["context"]
                try:
                    HOOKS[hook].context.model_validate(context)
                except ValueError:
                    continue  # an example our context model rejects never reaches a service
                cases.append((service, hook, context))
    return cases


@pytest.mark.parametrize(("service", "hook", "context"), _official_examples())
def test_official_examples_without_prefetch_never_raise(
    service: ServiceDefinition, hook: str, context: dict[str, Any]
) -> None:
    """Known-empty data never makes a service fail; data it needs and could not obtain is a
    412 (PreconditionFailed naming the key), never an answer of "nothing found"."""
    result = evaluate(service, make_call(hook, context, dict.fromkeys(service.prefetch_for(hook))))
    for card in result.cards:
        card.wire()
    try:
        evaluate(service, make_call(hook, context, {}))
    except PreconditionFailed as exc:
        assert all(i.field and i.field.startswith("prefetch.") for i in exc.issues)


# --- allergy-documentation ------------------------------------------------------------------

PATIENT = {
    "resourceType": "Patient",
    "id": "1288992",
    "name": [
        {"use": "usual", "given": ["Pete"]},
        {"use": "official", "given": ["Peter", "James"], "family": "Chalmers"},
    ],
}


@pytest.mark.parametrize(
    ("hook", "context"),
    [
        ("order-select", official("order-select")),
        ("encounter-start", official("encounter-start")),
    ],
)
def test_allergy_documentation_fires_on_empty_allergy_list(
    hook: str, context: dict[str, Any]
) -> None:
    call = make_call(hook, context, {"patient": PATIENT, "allergies": bundle()})
    [card] = run("allergy-documentation", call)
    assert card.indicator == "info"
    assert card.summary == "No allergy information documented for Peter James Chalmers"
    wire = card.wire()
    assert wire["links"] == [
        {
            "label": "FHIR AllergyIntolerance resource",
            "url": "https://www.hl7.org/fhir/R4/allergyintolerance.html",
            "type": "absolute",
        }
    ]
    assert wire["source"] == {"label": "cds-service built-in: Allergy documentation"}


def test_allergy_documentation_null_prefetch_and_entered_in_error_count_as_none() -> None:
    context = official("encounter-start")
    call = make_call("encounter-start", context, {"allergies": None})
    [card] = run("allergy-documentation", call)
    assert card.summary == "No allergy information documented for this patient"
    voided = {
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "verificationStatus": {"coding": [{"code": "entered-in-error"}]},
    }
    call = make_call("encounter-start", context, {"patient": PATIENT, "allergies": bundle(voided)})
    assert len(run("allergy-documentation", call)) == 1


def test_allergy_documentation_is_not_a_chart_opening_reminder() -> None:
    """Not on patient-view (a reminder on every chart opening is alert fatigue: 85 % of the
    Synthea population's openings), and on order-select only when a medication is selected."""
    assert "patient-view" not in SERVICES["allergy-documentation"].hooks
    context = official("order-select")
    diet_only = {**context, "selections": ["NutritionOrder/pureeddiet-simple"]}
    # No medication selected: the allergy list is not needed, so its absence is no 412 either.
    assert run("allergy-documentation", make_call("order-select", diet_only, {})) == []
    with_med = make_call("order-select", context, {"patient": PATIENT, "allergies": bundle()})
    assert len(run("allergy-documentation", with_med)) == 1


def test_allergy_documentation_silent_when_allergies_recorded() -> None:
    allergy = official("allergyintolerance-create")["allergyIntolerance"]["resource"]
    nka = {"resourceType": "AllergyIntolerance", "id": "nka", "code": {"text": "No known allergy"}}
    context = official("encounter-start")
    for allergies in (bundle(allergy), bundle(nka)):
        call = make_call("encounter-start", context, {"patient": PATIENT, "allergies": allergies})
        assert run("allergy-documentation", call) == []


SNOMED = "http://snomed.info/sct"
NO_KNOWN_ALLERGY = {
    "716186003": "No known allergy",
    "409137002": "No known drug allergy",
    "429625007": "No known food allergy",
    "428607008": "No known environmental allergy",
    "428197003": "No known insect allergy",
    "716220001": "No known animal allergy",
    "1003774007": "No known Hevea brasiliensis latex allergy",
}


def allergy_record(
    code: str, clinical: str | None = "active", verification: str | None = "confirmed"
) -> dict[str, Any]:
    """An AllergyIntolerance coded in SNOMED CT with the given statuses (None: absent)."""
    record: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": f"ai-{code}",
        "code": {"coding": [{"system": SNOMED, "code": code}], "text": "recorded"},
        "patient": {"reference": "Patient/1288992"},
    }
    if clinical is not None:
        record["clinicalStatus"] = {"coding": [{"code": clinical}]}
    if verification is not None:
        record["verificationStatus"] = {"coding": [{"code": verification}]}
    return record


def allergy_cards(*records: dict[str, Any]) -> list[Card]:
    prefetch = {"patient": PATIENT, "allergies": bundle(*records)}
    call = make_call("encounter-start", official("encounter-start"), prefetch)
    return run("allergy-documentation", call)


@pytest.mark.parametrize("code", sorted(NO_KNOWN_ALLERGY))
def test_allergy_documentation_a_no_known_allergy_record_documents_the_status(code: str) -> None:
    assert allergy_cards(allergy_record(code)) == []
    assert allergy_cards(allergy_record(code, clinical=None, verification=None)) == []


@pytest.mark.parametrize(
    ("records", "why"),
    [
        ([allergy_record("716186003", clinical="inactive")], "a withdrawn NKA statement"),
        ([allergy_record("409137002", clinical="resolved")], "a withdrawn NKA statement"),
        ([allergy_record("716186003", verification="refuted")], "a refuted NKA statement"),
        ([allergy_record("91936005", verification="refuted")], "a refuted allergy"),
        ([allergy_record("91936005", verification="entered-in-error")], "a voided allergy"),
    ],
)
def test_allergy_documentation_records_that_document_nothing(
    records: list[dict[str, Any]], why: str
) -> None:
    [card] = allergy_cards(*records)
    assert card.summary == "No allergy information documented for Peter James Chalmers", why


def test_allergy_documentation_real_allergies_document_the_status_whatever_their_course() -> None:
    penicillin = "91936005"  # Allergy to penicillin
    assert allergy_cards(allergy_record(penicillin)) == []
    assert allergy_cards(allergy_record(penicillin, clinical="resolved")) == []
    withdrawn_nka = allergy_record("716186003", clinical="inactive")
    assert allergy_cards(withdrawn_nka, allergy_record(penicillin)) == []


def test_allergy_documentation_never_guesses_when_the_allergy_list_is_unknown() -> None:
    """Not obtained: 412 naming the key ("not checked" is no "nothing documented"). Obtained
    but incomplete (a later page unreadable) or an OperationOutcome: no card, no claim."""
    context = official("encounter-start")
    for missing in (
        make_call("encounter-start", context, {"patient": PATIENT}),
        make_call("encounter-start", context, {"patient": PATIENT}, unavailable=["allergies"]),
    ):
        with pytest.raises(PreconditionFailed) as raised:
            run("allergy-documentation", missing)
        assert [i.field for i in raised.value.issues] == ["prefetch.allergies"]
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}
    for unknown in (
        make_call("encounter-start", context, {"allergies": bundle()}, incomplete=["allergies"]),
        make_call("encounter-start", context, {"allergies": outcome}),
    ):
        assert run("allergy-documentation", unknown) == []


# --- duplicate-therapy ----------------------------------------------------------------------


def test_duplicate_therapy_fires_on_official_order_sign_duplicate() -> None:
    active = med_request("active-1", authoredOn="2024-01-05T10:00:00Z")
    call = make_call("order-sign", official("order-sign"), {"activeMedications": bundle(active)})
    [card] = run("duplicate-therapy", call)
    wire = card.wire()
    assert card.indicator == "warning"
    assert card.summary.startswith("Possible duplicate therapy: Amoxicillin 120 MG/ML")
    assert "2024-01-05" in wire["detail"] and "MedicationRequest/active-1" in wire["detail"]
    assert wire["selectionBehavior"] == "at-most-one"
    [suggestion] = wire["suggestions"]
    assert suggestion["label"].startswith("Remove the new order for Amoxicillin")
    [action] = suggestion["actions"]
    assert action["type"] == "delete"
    assert action["resourceId"] == "MedicationRequest/smart-MedicationRequest-103"
    assert action["description"] and "resource" not in action
    reasons = wire["overrideReasons"]
    assert len(reasons) >= 2
    assert {r["system"] for r in reasons} == {"urn:cds-service:override-reason"}
    assert {"intended-duplicate", "patient-on-both"} <= {r["code"] for r in reasons}
    assert all(r["display"] for r in reasons)


def test_duplicate_therapy_order_select_only_checks_selected_orders() -> None:
    prefetch = {"activeMedications": bundle(med_request("active-1"))}
    context = official("order-select")
    assert len(run("duplicate-therapy", make_call("order-select", context, prefetch))) == 1
    unselected = copy.deepcopy(context)
    unselected["selections"] = ["NutritionOrder/pureeddiet-simple"]
    assert run("duplicate-therapy", make_call("order-select", unselected, prefetch)) == []


def test_duplicate_therapy_silent_without_duplicate() -> None:
    context = official("order-sign")
    for actives in (
        bundle(med_request("other", "197361")),  # a different drug
        bundle(med_request("smart-MedicationRequest-103")),  # the draft itself (re-signing)
        bundle(med_request("stopped", status="stopped")),
        bundle(),
        None,
    ):
        call = make_call("order-sign", context, {"activeMedications": actives})
        assert run("duplicate-therapy", call) == []
    with pytest.raises(PreconditionFailed):  # not obtained: not checked, so not "no duplicate"
        run("duplicate-therapy", make_call("order-sign", context))


def test_duplicate_therapy_medication_refill() -> None:
    active = bundle(med_request("home-1"))
    # the official example orders by medicationReference only: nothing to compare
    call = make_call(
        "medication-refill", official("medication-refill"), {"activeMedications": active}
    )
    assert run("duplicate-therapy", call) == []
    refill = copy.deepcopy(official("medication-refill"))
    refill["medications"] = bundle(med_request("refill-1", status="draft"))
    [card] = run(
        "duplicate-therapy", make_call("medication-refill", refill, {"activeMedications": active})
    )
    assert card.wire()["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/refill-1"
    # a refill that renews the active order is not a duplicate of it
    renewal = med_request(
        "refill-1", status="draft", priorPrescription={"reference": "MedicationRequest/home-1"}
    )
    refill["medications"] = bundle(renewal)
    assert (
        run(
            "duplicate-therapy",
            make_call("medication-refill", refill, {"activeMedications": active}),
        )
        == []
    )


def test_duplicate_therapy_truncates_long_names_and_tolerates_odd_shapes() -> None:
    context = copy.deepcopy(official("order-sign"))
    long_name = "Extraordinarily long compounded preparation name " * 5
    draft = med_request("d1", status="draft")
    draft["medicationCodeableConcept"]["text"] = long_name
    odd: list[dict[str, Any]] = [
        {
            "resourceType": "MedicationRequest",
            "id": "x1",
            "medicationCodeableConcept": "amoxicillin",
        },
        {
            "resourceType": "MedicationRequest",
            "id": {"odd": 1},
            "medicationCodeableConcept": {"coding": 7},
        },
        {
            "resourceType": "MedicationRequest",
            "medicationCodeableConcept": {"coding": [None, {"code": 1}]},
        },
    ]
    context["draftOrders"] = bundle(draft, *odd)
    actives = {
        "resourceType": "Bundle",
        "entry": [{"resource": med_request("a1")}, {"x": 1}, *[{"resource": r} for r in odd]],
    }
    [card] = run(
        "duplicate-therapy", make_call("order-sign", context, {"activeMedications": actives})
    )
    assert len(card.summary) <= 139 and card.summary.endswith("…")


def named(ident: str, code: str, display: str, *, status: str = "active") -> dict[str, Any]:
    """A MedicationRequest coded with one RxNorm code and its display."""
    resource = med_request(ident, code, status=status)
    resource["medicationCodeableConcept"]["coding"][0]["display"] = display
    return resource


def test_duplicate_therapy_same_ingredient_at_another_strength() -> None:
    context = copy.deepcopy(official("order-sign"))
    context["draftOrders"] = bundle(
        named("d-lis20", "314077", "lisinopril 20 MG Oral Tablet", status="draft")
    )
    actives = bundle(named("a-lis10", "314076", "lisinopril 10 MG Oral Tablet"))
    [card] = run(
        "duplicate-therapy", make_call("order-sign", context, {"activeMedications": actives})
    )
    wire = card.wire()
    summary = "Possible duplicate therapy: lisinopril 20 MG Oral Tablet (same lisinopril)"
    assert card.summary == summary
    assert "same ingredient: lisinopril" in wire["detail"]
    assert "MedicationRequest/a-lis10" in wire["detail"]
    assert wire["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/d-lis20"


def test_duplicate_therapy_ingredient_in_a_combination_product_is_a_duplicate() -> None:
    """Decision: lisinopril with lisinopril/hydrochlorothiazide doubles the lisinopril."""
    context = copy.deepcopy(official("order-sign"))
    combination = "hydrochlorothiazide 12.5 MG / lisinopril 20 MG Oral Tablet [Zestoretic]"
    context["draftOrders"] = bundle(named("d-combo", "823982", combination, status="draft"))
    for active in (
        named("a-lis", "314076", "lisinopril 10 MG Oral Tablet"),
        named("a-in", "29046", "lisinopril"),  # ordered by its RxNorm ingredient (IN) code
        named("a-zes", "104377", "lisinopril 10 MG Oral Tablet [Zestril]"),
    ):
        call = make_call("order-sign", context, {"activeMedications": bundle(active)})
        [card] = run("duplicate-therapy", call)
        assert card.summary.endswith("(same lisinopril)")
    hctz = named("a-hctz", "310798", "hydrochlorothiazide 25 MG Oral Tablet")
    [card] = run(
        "duplicate-therapy",
        make_call("order-sign", context, {"activeMedications": bundle(hctz)}),
    )
    assert card.summary.endswith("(same hydrochlorothiazide)")


def test_duplicate_therapy_ingredient_names_ignore_salts_and_need_an_rxnorm_shape() -> None:
    context = copy.deepcopy(official("order-sign"))
    context["draftOrders"] = bundle(
        named("d-warf", "855332", "warfarin sodium 5 MG Oral Tablet", status="draft")
    )
    salt = bundle(named("a-warf", "11289", "warfarin"))
    call = make_call("order-sign", context, {"activeMedications": salt})
    assert len(run("duplicate-therapy", call)) == 1
    free_text = med_request("a-text", None)
    free_text["medicationCodeableConcept"] = {"text": "warfarin 5mg tabs"}
    other = named("a-amlo", "197361", "amlodipine 5 MG Oral Tablet")
    for actives in (bundle(free_text), bundle(other)):
        call = make_call("order-sign", context, {"activeMedications": actives})
        assert run("duplicate-therapy", call) == []
    # a draft named only by an RxNorm-style text is compared by its ingredients
    text_draft = med_request("d-text", None, status="draft")
    text_draft["medicationCodeableConcept"] = {"text": "Warfarin Sodium 2 MG Oral Tablet"}
    context["draftOrders"] = bundle(text_draft)
    [card] = run("duplicate-therapy", make_call("order-sign", context, {"activeMedications": salt}))
    summary = "Possible duplicate therapy: Warfarin Sodium 2 MG Oral Tablet (same warfarin)"
    assert card.summary == summary


# --- appointment-conflict -------------------------------------------------------------------


def booked(ident: str, start: str, end: str, status: str = "booked") -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": ident,
        "status": status,
        "start": start,
        "end": end,
    }


def test_appointment_conflict_fires_on_overlap_with_official_example() -> None:
    # the example proposes 2013-12-10 09:00-11:00 UTC; the booking is 10:30-11:30 UTC at -05:00
    existing = booked("b1", "2013-12-10T05:30:00-05:00", "2013-12-10T06:30:00-05:00")
    call = make_call(
        "appointment-book",
        official("appointment-book", "02"),
        {"bookedAppointments": bundle(existing)},
    )
    [card] = run("appointment-conflict", call)
    assert card.indicator == "warning"
    assert card.summary == "Appointment overlaps an existing booking on 2013-12-10"
    assert card.detail is not None and "Appointment/b1" in card.detail


def test_appointment_conflict_silent_without_overlap() -> None:
    context = official("appointment-book", "02")
    for existing in (
        booked("b1", "2013-12-10T11:00:00Z", "2013-12-10T12:00:00Z"),  # starts as it ends
        booked("b2", "2013-12-10T10:00:00Z", "2013-12-10T10:30:00Z", status="cancelled"),
        booked("b3", "2013-12-10T10:00:00", "2013-12-10T10:30:00"),  # no offset: not comparable
        booked("b4", "not a date", "2013-12-10T10:30:00Z"),
        booked("example", "2013-12-10T09:00:00Z", "2013-12-10T11:00:00Z"),  # itself
    ):
        call = make_call("appointment-book", context, {"bookedAppointments": bundle(existing)})
        assert run("appointment-conflict", call) == []
    with pytest.raises(PreconditionFailed):  # bookings not obtained: not checked
        run("appointment-conflict", make_call("appointment-book", context))


def test_appointment_conflict_skips_unparsable_proposed_times() -> None:
    # the first official example ends its appointments at "...T09:10:00:00-06:00" (malformed)
    existing = booked("b1", "2019-08-10T09:00:00-06:00", "2019-08-10T10:00:00-06:00")
    call = make_call(
        "appointment-book", official("appointment-book"), {"bookedAppointments": bundle(existing)}
    )
    assert run("appointment-conflict", call) == []


# --- discharge-medication-review ------------------------------------------------------------


def test_discharge_medication_review_lists_active_medications() -> None:
    meds = bundle(
        med_request("m1", medicationCodeableConcept={"text": "Metformin 500 mg tablet"}),
        med_request(
            "m2", None, medicationReference={"display": "oxybutynin (DITROPAN XL) CR tablet"}
        ),
        med_request("m3", "197361"),
        med_request("m4", None),
        med_request("m5", status="completed"),
    )
    call = make_call(
        "encounter-discharge", official("encounter-discharge"), {"activeMedications": meds}
    )
    [card] = run("discharge-medication-review", call)
    assert card.indicator == "info"
    assert card.summary == "Review 4 active medications before discharge"
    assert card.detail is not None
    assert "- Metformin 500 mg tablet" in card.detail
    assert "- oxybutynin (DITROPAN XL) CR tablet" in card.detail
    assert "- Drug 197361" in card.detail
    assert "MedicationRequest/m4" in card.detail


def test_discharge_medication_review_singular_and_silent() -> None:
    context = official("encounter-discharge")
    one = make_call(
        "encounter-discharge", context, {"activeMedications": bundle(med_request("m1"))}
    )
    [card] = run("discharge-medication-review", one)
    assert card.summary == "Review 1 active medication before discharge"
    for data in (bundle(), None, bundle(med_request("m1", status="stopped"))):
        call = make_call("encounter-discharge", context, {"activeMedications": data})
        assert run("discharge-medication-review", call) == []


# --- order-dispatch-check -------------------------------------------------------------------


def test_order_dispatch_check_silent_on_official_example() -> None:
    context = official("order-dispatch")
    assert run("order-dispatch-check", make_call("order-dispatch", context)) == []
    absolute = copy.deepcopy(context)
    absolute["fulfillment-tasks"][0]["focus"] = {
        "reference": "https://ehr.example.org/fhir/ServiceRequest/proc002/_history/3"
    }
    assert run("order-dispatch-check", make_call("order-dispatch", absolute)) == []
    no_tasks = {k: v for k, v in context.items() if k != "fulfillment-tasks"}
    assert run("order-dispatch-check", make_call("order-dispatch", no_tasks)) == []


def test_order_dispatch_check_fires_on_foreign_or_missing_focus() -> None:
    context = copy.deepcopy(official("order-dispatch"))
    task = context["fulfillment-tasks"][0]
    unfocused = {k: v for k, v in task.items() if k != "focus"} | {"id": "t2"}
    task["focus"] = {"reference": "ServiceRequest/other"}
    context["fulfillment-tasks"].append(unfocused)
    [card] = run("order-dispatch-check", make_call("order-dispatch", context))
    assert card.indicator == "warning"
    assert card.summary == "Fulfillment task does not reference a dispatched order"
    assert card.detail is not None
    assert "ServiceRequest/other" in card.detail and "Task/t2" in card.detail


# --- duplicate-record-check -----------------------------------------------------------------

BEE_VENOM = {"system": "http://snomed.info/sct", "code": "424213003"}
ANKLE_FRACTURE = {"system": "http://snomed.info/sct", "code": "16114001"}


def allergy(ident: str, coding: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "AllergyIntolerance", "id": ident, "code": {"coding": [coding]}} | extra


def condition(ident: str, coding: dict[str, str], status: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": ident,
        "clinicalStatus": status,
        "code": {"coding": [coding]},
        "recordedDate": "2023-06-01",
    }


def test_duplicate_allergy_fires() -> None:
    existing = allergy("old-1", BEE_VENOM, recordedDate="2020-02-02")
    call = make_call(
        "allergyintolerance-create",
        official("allergyintolerance-create"),
        {"allergies": bundle(existing)},
    )
    [card] = run("duplicate-record-check", call)
    assert card.indicator == "warning"
    assert card.summary == "Possible duplicate allergy: Allergy to bee venom"
    assert card.detail is not None and "AllergyIntolerance/old-1" in card.detail


def test_duplicate_allergy_silent() -> None:
    context = official("allergyintolerance-create")
    voided = {"verificationStatus": {"coding": [{"code": "entered-in-error"}]}}
    for existing in (
        allergy("RES163672", BEE_VENOM),  # the new record itself
        allergy("old-2", BEE_VENOM, **voided),
        allergy("old-3", {"system": "http://snomed.info/sct", "code": "91936005"}),
        allergy("old-4", {"system": "http://example.org/other", "code": "424213003"}),
    ):
        call = make_call("allergyintolerance-create", context, {"allergies": bundle(existing)})
        assert run("duplicate-record-check", call) == []
    with pytest.raises(PreconditionFailed):  # allergy list not obtained: not checked
        run("duplicate-record-check", make_call("allergyintolerance-create", context))


def test_duplicate_problem_fires_for_active_conditions() -> None:
    context = official("problem-list-item-create")
    active_r4 = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
        ]
    }
    for status in (active_r4, "active"):
        existing = condition("c-old", ANKLE_FRACTURE, status)
        call = make_call("problem-list-item-create", context, {"conditions": bundle(existing)})
        [card] = run("duplicate-record-check", call)
        assert card.summary == "Possible duplicate problem: Fracture of ankle"
        assert card.detail is not None and "2023-06-01" in card.detail


def test_duplicate_problem_silent_for_resolved_or_other_conditions() -> None:
    context = official("problem-list-item-create")
    for existing in (
        condition("c-old", ANKLE_FRACTURE, {"coding": [{"code": "resolved"}]}),
        condition("c-old", ANKLE_FRACTURE, None),
        condition("c-other", {"system": "http://snomed.info/sct", "code": "38341003"}, "active"),
        condition("3a14127f", ANKLE_FRACTURE, "active"),  # the new record itself
    ):
        call = make_call("problem-list-item-create", context, {"conditions": bundle(existing)})
        assert run("duplicate-record-check", call) == []


# --- shared FHIR readers --------------------------------------------------------------------


def test_fhir_helpers_are_defensive() -> None:
    from cds_service.services.builtin import _fhir

    assert _fhir.parse_instant("2019-08-10T09:10:00:00-06:00") is None  # official example typo
    assert _fhir.parse_instant("2019-08-10") is None
    assert _fhir.parse_instant("2019-08-10T09:10:00") is None  # no offset
    assert _fhir.parse_instant(["2019-08-10T09:10:00Z"]) is None
    parsed = _fhir.parse_instant("2019-08-10T09:10:00.123456789-06:00")
    assert parsed == datetime(2019, 8, 10, 15, 10, 0, 123456, tzinfo=UTC)
    assert _fhir.patient_name(PATIENT) == "Peter James Chalmers"
    assert _fhir.patient_name({"name": [{"text": " Pat Doe "}]}) == "Pat Doe"
    assert _fhir.patient_name({"name": "Pat"}) is None
    assert _fhir.status_codes("active") == {"active"}
    assert _fhir.status_codes({"coding": [{"code": "Active"}, "x", {"code": 3}]}) == {"active"}
    assert _fhir.resources_of_type({"resourceType": "Bundle", "entry": 5}, "Condition") == []
    assert _fhir.medication_name({"medicationReference": "Medication/1"}) is None
    assert _fhir.truncate("x" * 200) == "x" * 138 + "…"
