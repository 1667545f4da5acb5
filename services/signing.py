"""Signed, expiring artefact URLs: HMAC-SHA256 over path + expiry. Floor module (#10)."""
