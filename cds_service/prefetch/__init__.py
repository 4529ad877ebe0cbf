"""Prefetch: render templates, take what the client sent, fetch what is missing."""
