"""Whole populations through the services: what a rule would do before it goes live.

The data layer reads a population too large for memory: `sources` streams an export's resources
(Bulk Data NDJSON, a directory of Bundles, a live `$export` downloaded first); `partition`
hash-partitions it by patient under a local or fsspec work directory (`layout` describes what it
wrote, `spill` is its on-disk routing and sorting), and reads it back one patient's record at a
time; `records` is the in-memory reading of a small export over it. `generate` (with
`synthetic`, `writer`) resamples an export into N synthetic patients.

`replay` sends each patient's calls through the one evaluation pipeline, as an EHR would make
them; `report` counts what every rule and service did (card rates, errors); `cli` is
`cds-service rules simulate`, `generate_cli` is `cds-service population generate`.
"""
