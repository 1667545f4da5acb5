import pytest
from pydantic import ValidationError

from services.settings import Settings
from services.tenants import find_tenant, hash_key


def test_env_prefix_and_derived_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("REALRAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REALRAG_MAX_N", "2")
    digest = hash_key("key-alpha-123")
    monkeypatch.setenv("REALRAG_TENANTS", f'[{{"name": "alpha", "key_sha256": "{digest}", "role": "admin"}}]')
    s = Settings()
    assert s.max_n == 2
    assert s.artifact_root == tmp_path / "artifacts"
    assert s.qdrant_root == tmp_path / "qdrant"
    assert s.auth_enabled and [(t.name, t.key_sha256, t.role) for t in s.tenants] == [("alpha", digest, "admin")]
    assert find_tenant(s, "key-alpha-123").is_admin and find_tenant(s, digest) is None, "the digest is not a key"


def test_visibility_timeout_must_exceed_the_hard_time_limit():
    with pytest.raises(ValidationError, match="visibility_timeout_s"):
        Settings(task_time_limit_s=600, task_soft_time_limit_s=500, visibility_timeout_s=300)
    with pytest.raises(ValidationError, match="soft"):
        Settings(task_soft_time_limit_s=700, task_time_limit_s=660)
