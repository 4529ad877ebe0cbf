"""Code sets the FHIR adapters look for: LOINC, SNOMED CT, ICD-10(-CM) and RxNorm.

Conditions match a SNOMED CT code exactly or an ICD-10 code by prefix (``"I50"`` matches
``"I50.9"``). Medications match an RxNorm *ingredient* code, or the ingredient's name as a word in
the coding display / text: clinical-drug codes (e.g. Synthea's SCD ``999967`` "amLODIPine 5 MG /
Hydrochlorothiazide 12.5 MG / Olmesartan medoxomil 20 MG Oral Tablet") carry no ingredient code,
so the name is what identifies the ingredient there. Only RxNorm ingredient codes we are sure of
are listed; every ingredient is also listed by name.
"""

from __future__ import annotations

from dataclasses import dataclass

SNOMED = "http://snomed.info/sct"
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"})
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@dataclass(frozen=True, slots=True)
class CodeSet:
    """SNOMED CT codes (exact) and ICD-10 code prefixes."""

    snomed: frozenset[str]
    icd10: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DrugSet:
    """RxNorm ingredient codes and lower-case ingredient names."""

    rxnorm: frozenset[str]
    names: frozenset[str]


# --- LOINC ------------------------------------------------------------------------------------
LOINC_TOTAL_CHOLESTEROL = frozenset({"2093-3", "14647-2"})  # mass/vol; moles/vol in serum/plasma
LOINC_HDL = frozenset({"2085-9", "14646-4"})  # HDL cholesterol mass/vol; moles/vol
LOINC_BP_PANELS = frozenset({"85354-9", "55284-4"})  # BP panel; BP systolic & diastolic
LOINC_SYSTOLIC = "8480-6"
LOINC_DIASTOLIC = "8462-4"
LOINC_SMOKING = frozenset({"72166-2"})  # Tobacco smoking status
LOINC_HBA1C = frozenset({"4548-4", "17856-6", "59261-8"})  # HbA1c %; % by HPLC; IFCC mmol/mol
LOINC_BMI = frozenset({"39156-5"})
# 2160-0 serum/plasma mass/vol, 38483-4 blood mass/vol (what Synthea uses), 14682-9 moles/vol.
LOINC_CREATININE = frozenset({"2160-0", "38483-4", "14682-9"})
LOINC_RESP_RATE = frozenset({"9279-1"})
LOINC_GCS_TOTAL = frozenset({"9269-2"})

# Every Observation code a score adapter reads (systolic alone or in a BP panel): what the
# scores' prefetch asks for, whatever category the EHR files it under (Synthea files smoking
# status under `survey`, US Core under `social-history`).
SCORE_OBSERVATION_CODES = (
    LOINC_TOTAL_CHOLESTEROL
    | LOINC_HDL
    | LOINC_BP_PANELS
    | {LOINC_SYSTOLIC}
    | LOINC_SMOKING
    | LOINC_HBA1C
    | LOINC_BMI
    | LOINC_CREATININE
    | LOINC_RESP_RATE
    | LOINC_GCS_TOTAL
)

# --- Smoking status answers (SNOMED CT, the 72166-2 answer list) ------------------------------
SMOKING_CURRENT = frozenset(
    {
        "449868002",  # Smokes tobacco daily
        "428041000124106",  # Occasional tobacco smoker
        "77176002",  # Smoker (current status unknown counted as current)
        "428071000124103",  # Current heavy tobacco smoker
        "428061000124105",  # Current light tobacco smoker
        "65568007",  # Cigarette smoker
    }
)
SMOKING_NOT_CURRENT = frozenset(
    {
        "266919005",  # Never smoked tobacco
        "8517006",  # Ex-smoker (former)
    }
)

# --- US Core race (OMB categories, urn:oid:2.16.840.1.113883.6.238) -----------------------------
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
OMB_WHITE = "2106-3"
OMB_BLACK = "2054-5"  # Black or African American

# --- Conditions ---------------------------------------------------------------------------------
ATRIAL_FIBRILLATION = CodeSet(
    frozenset(
        {
            "49436004",  # Atrial fibrillation
            "282825002",  # Paroxysmal atrial fibrillation
            "440059007",  # Persistent atrial fibrillation
            "440028005",  # Permanent atrial fibrillation
        }
    ),
    frozenset({"I48.0", "I48.1", "I48.2", "I48.91"}),  # AF (not I48.3/.4/.92 atrial flutter)
)
HEART_FAILURE = CodeSet(
    frozenset(
        {
            "84114007",  # Heart failure
            "42343007",  # Congestive heart failure
            "88805009",  # Chronic congestive heart failure
            "85232009",  # Left heart failure
        }
    ),
    frozenset({"I50", "I11.0"}),  # heart failure; hypertensive heart disease with HF
)
HYPERTENSION = CodeSet(
    frozenset(
        {
            "38341003",  # Hypertensive disorder, systemic arterial
            "59621000",  # Essential hypertension (Synthea's "Hypertension")
            "1201005",  # Benign essential hypertension
        }
    ),
    frozenset({"I10", "I11", "I12", "I13", "I15"}),  # hypertensive diseases
)
DIABETES = CodeSet(
    frozenset(
        {
            "73211009",  # Diabetes mellitus
            "44054006",  # Diabetes mellitus type 2 (Synthea's "Diabetes")
            "46635009",  # Diabetes mellitus type 1
            "127013003",  # Disorder of kidney due to diabetes mellitus
        }
    ),
    frozenset({"E10", "E11", "E13"}),  # type 1, type 2, other specified (not prediabetes R73)
)
STROKE_TIA = CodeSet(
    frozenset(
        {
            "230690007",  # Cerebrovascular accident (stroke)
            "422504002",  # Ischemic stroke
            "432504007",  # Cerebral infarction
            "266257000",  # Transient ischemic attack
        }
    ),
    # cerebral infarction, stroke NOS (WHO), TIA, arterial embolism, history of TIA/infarction
    frozenset({"I63", "I64", "G45", "I74", "Z86.73"}),
)
MYOCARDIAL_INFARCTION = CodeSet(
    frozenset(
        {
            "22298006",  # Myocardial infarction
            "401303003",  # Acute ST segment elevation myocardial infarction
            "401314000",  # Acute non-ST segment elevation myocardial infarction
            "399211009",  # History of myocardial infarction
        }
    ),
    frozenset({"I21", "I22", "I25.2"}),  # acute MI, subsequent MI, old MI
)
PERIPHERAL_ARTERY_DISEASE = CodeSet(
    frozenset(
        {
            "399957001",  # Peripheral arterial occlusive disease
            "840580004",  # Peripheral arterial disease
        }
    ),
    frozenset({"I70.2", "I73.9"}),  # atherosclerosis of limb arteries; PVD unspecified
)
AORTIC_PLAQUE = CodeSet(frozenset(), frozenset({"I70.0"}))  # atherosclerosis of aorta
CORONARY_HEART_DISEASE = CodeSet(
    frozenset(
        {
            "53741008",  # Coronary arteriosclerosis (Synthea's "Coronary Heart Disease")
            "414545008",  # Ischemic heart disease
            "194828000",  # Angina
        }
    ),
    frozenset({"I20", "I24", "I25"}),  # angina, other acute/chronic ischemic heart disease
)
RENAL_DISEASE_SEVERE = CodeSet(
    frozenset(
        {
            "46177005",  # End-stage renal disease
            "433146000",  # Chronic kidney disease stage 5
            "105502003",  # Dependence on renal dialysis
        }
    ),
    frozenset({"N18.5", "N18.6", "Z99.2", "Z94.0"}),  # CKD 5, ESRD, dialysis, kidney transplant
)
LIVER_DISEASE = CodeSet(
    frozenset({"19943007"}),  # Cirrhosis of liver
    frozenset({"K70.3", "K74.6", "K72"}),  # alcoholic cirrhosis, other cirrhosis, hepatic failure
)
BLEEDING_HISTORY = CodeSet(
    frozenset(
        {
            "74474003",  # Gastrointestinal hemorrhage
            "1386000",  # Intracranial hemorrhage
        }
    ),
    frozenset({"K92.2", "I60", "I61", "I62", "D62"}),  # GI, intracranial, acute posthaemorrhagic
)
BLEEDING_PREDISPOSITION = CodeSet(
    frozenset({"271737000"}),  # Anemia
    frozenset({"D50", "D64.9", "D68"}),  # iron-deficiency anaemia, anaemia NOS, coagulation defects
)
ALCOHOL_EXCESS = CodeSet(
    frozenset({"7200002", "15167005"}),  # Alcoholism; Alcohol abuse
    frozenset({"F10.1", "F10.2"}),  # alcohol abuse; alcohol dependence
)
GESTATIONAL_DIABETES = CodeSet(frozenset({"11687002"}), frozenset({"O24.4"}))


# --- Medications (RxNorm ingredients) -----------------------------------------------------------
def _drugs(rxnorm: dict[str, str], other_names: str) -> DrugSet:
    """`rxnorm`: ingredient code -> name; `other_names`: ingredients matched by name only."""
    return DrugSet(frozenset(rxnorm), frozenset(rxnorm.values()) | frozenset(other_names.split()))


ANTIHYPERTENSIVES = _drugs(
    {
        "29046": "lisinopril", "3827": "enalapril", "1998": "captopril", "35296": "ramipril",
        "52175": "losartan", "69749": "valsartan", "17767": "amlodipine", "7417": "nifedipine",
        "3443": "diltiazem", "11170": "verapamil", "5487": "hydrochlorothiazide",
        "2409": "chlorthalidone", "4603": "furosemide", "9997": "spironolactone",
        "1202": "atenolol", "6918": "metoprolol", "20352": "carvedilol", "8787": "propranolol",
        "2599": "clonidine", "5470": "hydralazine",
    },
    "benazepril quinapril perindopril irbesartan candesartan olmesartan telmisartan felodipine "
    "indapamide torsemide bumetanide eplerenone bisoprolol nebivolol labetalol doxazosin",
)  # fmt: skip
ANTIPLATELETS_NSAIDS = _drugs(
    {
        "1191": "aspirin", "32968": "clopidogrel", "613391": "prasugrel", "1116632": "ticagrelor",
        "5640": "ibuprofen", "7258": "naproxen", "3355": "diclofenac", "140587": "celecoxib",
    },
    "ticlopidine dipyridamole meloxicam indomethacin ketorolac etodolac nabumetone",
)  # fmt: skip
VITAMIN_K_ANTAGONISTS = _drugs({"11289": "warfarin"}, "acenocoumarol phenprocoumon")
