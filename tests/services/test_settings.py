import pytest
from pydantic import ValidationError

from services.settings import Settings


def test_env_prefix_and_derived_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("REALRAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REALRAG_MAX_N", "2")
    monkeypatch.setenv("REALRAG_API_KEYS", '["key-alpha-123", "key-beta-456"]')
    s = Settings()
    assert s.max_n == 2
    assert s.artifact_root == tmp_path / "artifacts"
    assert s.qdrant_root == tmp_path / "qdrant"
    assert s.auth_enabled and [k.get_secret_value() for k in s.api_keys] == ["key-alpha-123", "key-beta-456"]
    assert "key-alpha-123" not in repr(s), "secrets never print"


def test_visibility_timeout_must_exceed_the_hard_time_limit():
    with pytest.raises(ValidationError, match="visibility_timeout_s"):
        Settings(task_time_limit_s=600, task_soft_time_limit_s=500, visibility_timeout_s=300)
    with pytest.raises(ValidationError, match="soft"):
        Settings(task_soft_time_limit_s=700, task_time_limit_s=660)
