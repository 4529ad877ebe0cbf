"""Who may call us, and what we may do on their behalf: tenants, JWT verification, SSRF guard."""
