"""The webhook signature: what a receiver checks (integrity, secret, replay window)."""

from __future__ import annotations

import hashlib
import hmac

from backend.notify import signing

BODY = b'{"event":"alert.opened","history_id":7}'
SECRET = "whsec_" + "k" * 43


def test_header_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = signing.signature_header(SECRET, 1_767_225_600, BODY)
    expected = hmac.new(SECRET.encode(), b"1767225600." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1767225600,v1={expected}"


def test_verify_accepts_the_signed_body_within_the_window() -> None:
    header = signing.signature_header(SECRET, 1000, BODY)
    assert signing.verify(SECRET, header, BODY, now=1000)
    assert signing.verify(SECRET, header, BODY, now=1000 + 300)


def test_verify_refuses_a_changed_body_another_secret_or_an_old_request() -> None:
    header = signing.signature_header(SECRET, 1000, BODY)
    assert not signing.verify(SECRET, header, BODY.replace(b"7", b"8"), now=1000)
    assert not signing.verify(SECRET + "x", header, BODY, now=1000)
    # A captured request replayed six minutes later.
    assert not signing.verify(SECRET, header, BODY, now=1000 + 301)
    # The timestamp cannot be refreshed without the secret.
    forged = header.replace("t=1000", "t=1400")
    assert not signing.verify(SECRET, forged, BODY, now=1400)


def test_malformed_headers_are_refused_not_crashed_on() -> None:
    for header in ("", "t=1000", "v1=abc", "t=abc,v1=00", "garbage", "t=-5,v1=00", "t=1,,v1=0"):
        assert not signing.verify(SECRET, header, BODY, now=1000), header


def test_any_of_several_v1_signatures_may_match() -> None:
    good = signing.mac(SECRET, 1000, BODY)
    assert signing.verify(SECRET, f"t=1000,v1={'0' * 64},v1={good}", BODY, now=1000)


def test_new_secrets_are_long_and_distinct() -> None:
    secrets = {signing.new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(s.startswith("whsec_") and len(s) == 6 + 43 for s in secrets)
