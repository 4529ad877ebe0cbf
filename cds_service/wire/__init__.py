"""Wire models: the JSON that crosses the CDS Hooks boundary, in both directions."""
