"""Whole populations through the services: what a rule would do before it goes live.

`records` reads a Bulk Data export into one record per patient; `replay` sends each patient's
calls through the one evaluation pipeline, as an EHR would make them; `report` counts what every
rule and service did (card rates, errors); `cli` is `cds-service rules simulate`.
"""
