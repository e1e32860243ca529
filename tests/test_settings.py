"""core.settings: env parsing, nesting, validation messages naming the variable and range."""

from __future__ import annotations

import pytest

from core.settings import (
    IngestSettings,
    RedisSettings,
    Settings,
    SettingsError,
    WorkerSettings,
    env_var_name,
    get_settings,
    iter_fields,
    redacted_dump,
)


@pytest.fixture
def env(monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("FACESTREAM_"):
            monkeypatch.delenv(k)

    def set_(**kv):
        for k, v in kv.items():
            monkeypatch.setenv(k, v)

    return set_


def test_defaults_compose_all_sections(env):
    s = get_settings()
    assert isinstance(s, Settings)
    assert s.redis.prefix == "facestream" and s.redis.url.startswith("redis://")
    assert s.worker.max_batch >= 1 and s.worker.runtime == "auto"
    assert s.ingest.lease_renew_ms < s.ingest.lease_ttl_ms
    assert s.log.level == "INFO" and s.log.format == "text"


def test_env_prefix_and_nested_delimiter(env):
    env(FACESTREAM_WORKER__MAX_BATCH="16", FACESTREAM_REDIS__URL="rediss://u:p@redis.example:6380/2",
        FACESTREAM_REDIS__PREFIX="prod", FACESTREAM_LOG__LEVEL="debug", FACESTREAM_LOG__FORMAT="JSON",
        FACESTREAM_INGEST__MAX_FRAME_AGE_MS="500", FACESTREAM_WORKER__RUNTIME="onnx",
        FACESTREAM_REDIS__PASSWORD="pw")
    s = get_settings()
    assert s.worker.max_batch == 16 and s.worker.runtime == "onnx"
    assert s.redis.url == "rediss://u:p@redis.example:6380/2" and s.redis.prefix == "prod"
    assert s.redis.password.get_secret_value() == "pw"
    assert (s.log.level, s.log.format) == ("DEBUG", "json")
    assert s.ingest.max_frame_age_ms == 500


@pytest.mark.parametrize(
    ("var", "value", "expect"),
    [
        ("FACESTREAM_WORKER__MAX_BATCH", "0", "integer 1..256"),
        ("FACESTREAM_WORKER__MAX_BATCH", "lots", "integer 1..256"),
        ("FACESTREAM_WORKER__RUNTIME", "cuda", "one of: auto, torch, onnx, openvino, tensorrt"),
        ("FACESTREAM_WORKER__THRESHOLD", "1.5", "number 0.0..1.0"),
        ("FACESTREAM_WORKER__HTTP_PORT", "70000", "integer 0..65535"),
        ("FACESTREAM_INGEST__OPEN_TIMEOUT_S", "0", "number > 0 and <= 120"),
        ("FACESTREAM_LOG__FORMAT", "xml", "one of: text, json"),
        ("FACESTREAM_REDIS__URL", "http://x", "redis://, rediss://"),
        ("FACESTREAM_REDIS__PREFIX", "", "length 1..64"),
    ],
)
def test_invalid_value_names_variable_and_range(env, var, value, expect):
    env(**{var: value})
    with pytest.raises(SettingsError) as ei:
        get_settings()
    msg = str(ei.value)
    assert var in msg and expect in msg, msg


def test_cross_field_rule_names_both_variables(env):
    env(FACESTREAM_INGEST__LEASE_TTL_MS="2000", FACESTREAM_INGEST__LEASE_RENEW_MS="5000")
    with pytest.raises(SettingsError) as ei:
        get_settings()
    assert "FACESTREAM_INGEST__LEASE_RENEW_MS" in str(ei.value)
    assert "FACESTREAM_INGEST__LEASE_TTL_MS" in str(ei.value)


def test_all_problems_reported_and_secrets_not_echoed(env):
    env(FACESTREAM_WORKER__MAX_BATCH="0", FACESTREAM_WORKER__MAX_WAIT_MS="-1",
        FACESTREAM_REDIS__URL="http://user:topsecret@host")
    with pytest.raises(SettingsError) as ei:
        get_settings()
    assert len(ei.value.problems) == 3
    assert "topsecret" not in str(ei.value)


def test_sections_build_without_env(env):
    env(FACESTREAM_WORKER__MAX_BATCH="64")
    assert WorkerSettings().max_batch == 8  # sections are plain models: no env
    assert WorkerSettings(max_batch=4).max_batch == 4
    with pytest.raises(ValueError):
        IngestSettings(backoff_min_s=10, backoff_max_s=1)
    with pytest.raises(ValueError):
        WorkerSettings(unknown_field=1)


def test_env_var_names_cover_every_field():
    names = [env_var_name(loc) for loc, _ in iter_fields()]
    assert "FACESTREAM_WORKER__MAX_BATCH" in names and "FACESTREAM_REDIS__URL" in names
    assert len(names) == len(set(names))
    for loc, info in iter_fields():
        assert info.description, f"{env_var_name(loc)} needs a description (docs/configuration.md)"


def test_redacted_dump_hides_secrets():
    s = Settings(redis=RedisSettings(url="redis://app:s3cr3t@redis:6379/0", password="hunter2"))
    d = redacted_dump(s)
    assert d["redis"]["url"] == "redis://app:***@redis:6379/0"
    assert d["redis"]["password"] == "***"
    assert "s3cr3t" not in str(d) and "hunter2" not in str(d)


def test_repr_of_settings_hides_the_redis_password():
    from core.settings import RedisSettings, Settings

    s = Settings(redis=RedisSettings(url="redis://app:S3cretPW@redis:6379/0", password="Other-PW"))
    for text in (repr(s), str(s), repr(s.redis)):
        assert "S3cretPW" not in text and "Other-PW" not in text, text
        assert "redis://app:***@redis:6379/0" in text
    assert s.redis.url == "redis://app:S3cretPW@redis:6379/0"  # the client still gets the real one


def test_http_endpoints_bind_loopback_unless_configured():
    from core.settings import IngestSettings, WorkerSettings

    assert WorkerSettings().http_host == "127.0.0.1" and IngestSettings().http_host == "127.0.0.1"


def test_misspelt_setting_variables_are_errors_not_ignored(monkeypatch):
    import pytest

    from core.settings import SettingsError, get_settings

    monkeypatch.setenv("FACESTREAM_WORKER_MAX_BATCH", "4")  # one underscore
    with pytest.raises(SettingsError, match="did you mean FACESTREAM_WORKER__MAX_BATCH"):
        get_settings()
    monkeypatch.delenv("FACESTREAM_WORKER_MAX_BATCH")
    monkeypatch.setenv("FACESTREAM_SHARED", "/data")  # a tool's own variable, not a setting: left alone
    monkeypatch.setenv("FACESTREAM_INGEST__REPLAY_WINDOW", "900000")
    with pytest.raises(SettingsError, match="REPLAY_WINDOW"):
        get_settings()
