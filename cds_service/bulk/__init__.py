"""Population data for precomputing scores: NDJSON files, SMART Backend Services, Bulk $export.

    ndjson.py    read NDJSON files line by line; bad lines become problem records
    keys.py      load the client's private key (PEM or JWK) and pick RS384 / ES384
    auth.py      SMART Backend Services: discovery, client assertion, cached access token
    manifest.py  the Bulk Data completion manifest
    export.py    Bulk Data Access $export: kick-off, poll, download, cancel
    errors.py    BulkError and OperationOutcome text
    httputil.py  shared HTTP helpers (origins, Retry-After, URL redaction)

Everything is async; nothing here ever logs an access token or a client assertion.
"""

from __future__ import annotations

from cds_service.bulk.auth import AccessToken, TokenSource, scopes_for_types
from cds_service.bulk.errors import BulkError
from cds_service.bulk.export import ExportProgress, export_resources
from cds_service.bulk.keys import SigningKey, load_private_key
from cds_service.bulk.manifest import Manifest, ManifestFile
from cds_service.bulk.ndjson import (
    NdjsonItem,
    NdjsonProblem,
    NdjsonResource,
    read_ndjson_dir,
    read_ndjson_file,
)

__all__ = [
    "AccessToken",
    "BulkError",
    "ExportProgress",
    "Manifest",
    "ManifestFile",
    "NdjsonItem",
    "NdjsonProblem",
    "NdjsonResource",
    "SigningKey",
    "TokenSource",
    "export_resources",
    "load_private_key",
    "read_ndjson_dir",
    "read_ndjson_file",
    "scopes_for_types",
]
