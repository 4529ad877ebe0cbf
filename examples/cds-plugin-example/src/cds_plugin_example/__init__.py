"""An example cds-service plugin: the CHADS2 score, a FHIRPath function, a Python service."""
