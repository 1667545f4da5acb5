"""Signed, expiring artefact URLs (services/signing.py): HMAC-SHA256 over path + expiry."""

from __future__ import annotations

import time

from services.settings import Settings
from services.signing import EXPIRY_STEP_S, expiry, sign, verify

PATH = "/v1/artifacts/outputs/0123/0.png"


def settings(**values) -> Settings:
    return Settings(url_signing_key="k" * 32, signed_url_ttl_s=600, **values)


def test_a_signature_verifies_until_it_expires():
    s = settings()
    query = sign(s, PATH)
    expires = int(query["expires"])
    assert time.time() + 600 <= expires < time.time() + 600 + EXPIRY_STEP_S + 1
    assert verify(s, PATH, query["expires"], query["signature"])
    assert verify(s, PATH, query["expires"], query["signature"], now=expires)
    assert not verify(s, PATH, query["expires"], query["signature"], now=expires + 1)


def test_expiries_are_rounded_so_repeated_reads_give_the_same_url():
    s = settings()
    assert expiry(s, now=1_000_000.0) == expiry(s, now=1_000_001.0) == 1_000_620
    assert expiry(s, now=1_000_020.0) == 1_000_620 and expiry(s, now=1_000_021.0) == 1_000_680


def test_tampering_with_path_expiry_or_signature_fails():
    s = settings()
    query = sign(s, PATH)
    later = str(int(query["expires"]) + 3600)
    assert not verify(s, "/v1/artifacts/outputs/0124/0.png", query["expires"], query["signature"])
    assert not verify(s, PATH, later, query["signature"])
    assert not verify(s, PATH, query["expires"], query["signature"][:-1] + ("A" if query["signature"][-1] != "A" else "B"))
    assert not verify(s, PATH, query["expires"], "")
    assert not verify(s, PATH, None, query["signature"])
    assert not verify(s, PATH, "-5", query["signature"])
    assert not verify(s, PATH, "1e9", query["signature"])
    assert not verify(s, PATH, "１２３", query["signature"])  # non-ASCII digits
    assert not verify(s, PATH, query["expires"], "é" * 43)  # non-ASCII signature: False, not TypeError


def test_another_key_does_not_verify():
    query = sign(settings(), PATH)
    other = Settings(url_signing_key="other" * 8, signed_url_ttl_s=600)
    assert not verify(other, PATH, query["expires"], query["signature"])


def test_without_a_key_each_process_signs_with_a_random_one():
    s = Settings(url_signing_key=None)
    query = sign(s, PATH)
    assert verify(s, PATH, query["expires"], query["signature"])
    assert not verify(settings(), PATH, query["expires"], query["signature"])
