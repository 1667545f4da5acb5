import pytest

from services.webhooks import WebhookRejected, check_target, sign


@pytest.mark.parametrize(
    "url",
    ["http://example.com/x", "https://127.0.0.1/x", "https://10.0.0.1/x", "https://169.254.169.254/latest", "file:///etc/passwd", "https:///nohost"],
)
def test_private_or_odd_targets_are_refused(url):
    with pytest.raises(WebhookRejected):
        check_target(url, allow_private=False)


def test_loopback_allowed_only_when_configured():
    check_target("http://127.0.0.1:9/hook", allow_private=True)


def test_signature_is_standard_webhooks_shape():
    sig = sign("secret", "msg_1", 1700000000, b'{"a":1}')
    assert sig.startswith("v1,") and sig == sign("secret", "msg_1", 1700000000, b'{"a":1}')
    assert sig != sign("secret", "msg_1", 1700000001, b'{"a":1}')
