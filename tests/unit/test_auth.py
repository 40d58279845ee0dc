"""Credentials, scopes and quotas without HTTP: API keys, JWTs (HS256, RS256, JWKS file and URL), token buckets."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from gateway import errors
from gateway.auth import Authenticator, bearer
from gateway.auth.__main__ import main as auth_cli
from gateway.auth.api_keys import key_digest, load_api_keys, new_key
from gateway.auth.principals import Scopes
from gateway.metrics import Metrics
from gateway.quotas import Limits, QuotaBook
from gateway.settings import AuthSettings, QuotaSettings, Settings
from tests.helpers import JwksServer

HS_SECRET = b"0123456789abcdef0123456789abcdef-test-secret"
ISS, AUD = "https://issuer.example", "kafka-gateway"


def _token(key: Any, alg: str = "HS256", headers: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"sub": "svc-a", "iss": ISS, "aud": AUD, "exp": now + 300, "scope": "read:orders.*"}
    body.update(claims)
    for name in [k for k, v in body.items() if v is None]:
        del body[name]
    return jwt.encode(body, key, algorithm=alg, headers=headers)


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[Any, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public_pem


def _hs(tmp_path: Path, **extra: Any) -> Authenticator:
    key = tmp_path / "hs.key"
    key.write_bytes(HS_SECRET + b"\n")
    return Authenticator(
        AuthSettings(mode="jwt", jwt_algorithm="HS256", jwt_key_file=key, jwt_issuer=ISS, jwt_audience=AUD, **extra)
    )


# -- scopes ------------------------------------------------------------------------------------


def test_scopes_are_globs_per_kind_and_admin_is_separate() -> None:
    s = Scopes.parse(["read:orders.*", "write:orders.eu", "openid", "admin"])
    assert s.can_read("orders.eu") and s.can_read("orders.us")
    assert not s.can_read("payments")
    assert s.can_write("orders.eu") and not s.can_write("orders.us")
    assert s.admin and not s.reads_everything
    assert not Scopes.parse(["admin"]).can_read("orders.eu"), "admin alone reads no data"
    assert not Scopes.parse(["read:Orders"]).can_read("orders"), "topic names are case sensitive"


def test_bearer_header_parsing() -> None:
    assert bearer(b"Bearer abc") == "abc"
    assert bearer(b"bearer  abc ") == "abc"
    assert bearer(b"Basic abc") is None
    assert bearer(b"Bearer ") is None
    assert bearer(None) is None


# -- API keys ----------------------------------------------------------------------------------


def _key_file(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": entries}))
    return path


def test_api_key_file_holds_only_hashes_and_maps_keys_to_principals(tmp_path: Path) -> None:
    key = new_key()
    path = _key_file(
        tmp_path,
        [{"name": "web", "sha256": key_digest(key), "scopes": ["write:web.*"], "quota": {"records_per_s": 5}}],
    )
    assert key not in path.read_text()
    a = Authenticator(AuthSettings(mode="api-key", api_keys_file=path))
    principal = a.authenticate(key)
    assert principal.name == "web"
    assert principal.scopes.can_write("web.clicks")
    assert principal.limits == Limits(records_per_s=5)
    with pytest.raises(errors.Unauthenticated, match="Invalid API key"):
        a.authenticate(key + "x")
    with pytest.raises(errors.Unauthenticated, match="Missing credentials"):
        a.authenticate(None)


def test_api_key_file_is_reloaded_when_it_changes_and_a_bad_edit_keeps_the_old_keys(tmp_path: Path) -> None:
    old, fresh = new_key(), new_key()
    path = _key_file(tmp_path, [{"name": "old", "sha256": key_digest(old), "scopes": []}])
    a = Authenticator(AuthSettings(mode="api-key", api_keys_file=path, reload_s=0.01))
    assert a.authenticate(old).name == "old"
    _key_file(tmp_path, [{"name": "fresh", "sha256": key_digest(fresh), "scopes": []}])
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    time.sleep(0.02)
    assert a.authenticate(fresh).name == "fresh"
    with pytest.raises(errors.Unauthenticated):
        a.authenticate(old)  # revoked by removing it from the file
    path.write_text("{not json")
    os.utime(path, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    time.sleep(0.02)
    assert a.authenticate(fresh).name == "fresh"


def _new_key_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = auth_cli(["new-key", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_new_key_cli_prints_an_entry_or_adds_it_to_a_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _new_key_cli(capsys, "web", "write:web.*")
    assert code == 0
    key = err.split(": ", 1)[1].split()[0]
    assert json.loads(out) == {"name": "web", "sha256": key_digest(key), "scopes": ["write:web.*"]}

    path = tmp_path / "keys.json"
    keys = []
    for name, scopes in (("ops", ["admin", "read:*"]), ("app", ["write:orders"])):
        code, out, err = _new_key_cli(capsys, name, *scopes, "--file", str(path))
        assert (code, out) == (0, "")
        keys.append(err.split(": ", 1)[1].split()[0])
    assert not any(key in path.read_text() for key in keys)
    # The file the command wrote is one the gateway serves from: both keys work, with their scopes.
    a = Authenticator(AuthSettings(mode="api-key", api_keys_file=path))
    assert a.authenticate(keys[0]).name == "ops" and a.authenticate(keys[0]).scopes.admin
    assert a.authenticate(keys[1]).scopes.can_write("orders")
    assert path.stat().st_mode & 0o777 == 0o600


def test_new_key_cli_refuses_a_taken_name_and_a_broken_file_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    assert _new_key_cli(capsys, "app", "--file", str(path))[0] == 0
    before = path.read_bytes()
    code, out, err = _new_key_cli(capsys, "app", "admin", "--file", str(path))
    assert (code, out) == (1, "") and "already has a key named 'app'" in err and "kgw_" not in err
    assert path.read_bytes() == before
    path.write_text('{"keys": [{"name": "x", "sha256": "short"}]}')
    code, _, err = _new_key_cli(capsys, "other", "--file", str(path))
    assert code == 1 and "64 hex digits" in err
    assert path.read_text() == '{"keys": [{"name": "x", "sha256": "short"}]}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]  # no temporary file left


def test_bad_key_file_fails_at_start(tmp_path: Path) -> None:
    path = _key_file(tmp_path, [{"name": "x", "sha256": "not-a-hash", "scopes": []}])
    with pytest.raises(ValueError, match="64 hex digits"):
        Authenticator(AuthSettings(mode="api-key", api_keys_file=path))
    with pytest.raises(ValueError):
        load_api_keys(b'{"keys": [{"name": "x", "sha256": "' + b"0" * 64 + b'", "role": "admin"}]}')


def test_settings_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="GATEWAY_AUTH__API_KEYS_FILE"):
        AuthSettings(mode="api-key")
    with pytest.raises(ValidationError, match="GATEWAY_AUTH__JWT_ISSUER"):
        AuthSettings(mode="jwt", jwt_key_file=_key_file(tmp_path, []))
    with pytest.raises(ValidationError, match="cannot read file"):
        AuthSettings(mode="api-key", api_keys_file=tmp_path / "missing.json")


# -- JWT ---------------------------------------------------------------------------------------


def test_hs256_token_gives_principal_and_scopes(tmp_path: Path) -> None:
    a = _hs(tmp_path)
    p = a.authenticate(_token(HS_SECRET, scope="read:orders.* write:orders.eu admin"))
    assert p.name == "svc-a"
    assert p.scopes.can_read("orders.us") and p.scopes.can_write("orders.eu") and p.scopes.admin


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "Token expired"),
        ({"iss": "https://evil.example"}, "Invalid token"),
        ({"aud": "another-service"}, "Invalid token"),
        ({"exp": None}, "Invalid token"),
        ({"sub": None}, "no 'sub' claim"),
    ],
)
def test_jwt_claims_are_checked(tmp_path: Path, claims: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.Unauthenticated, match=message):
        _hs(tmp_path).authenticate(_token(HS_SECRET, **claims))


def test_jwt_signed_with_another_key_or_alg_none_is_refused(tmp_path: Path) -> None:
    a = _hs(tmp_path)
    with pytest.raises(errors.Unauthenticated, match="Invalid token"):
        a.authenticate(_token(b"another-secret-of-at-least-32-bytes!!"))
    unsigned = jwt.encode({"sub": "x", "iss": ISS, "aud": AUD, "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(errors.Unauthenticated, match="Invalid token"):
        a.authenticate(unsigned)
    with pytest.raises(errors.Unauthenticated, match="Invalid token"):
        a.authenticate("not.a.jwt")


def test_rs256_with_public_key_and_no_hs256_confusion(tmp_path: Path, rsa_keys: tuple[Any, bytes]) -> None:
    private, public_pem = rsa_keys
    pem = tmp_path / "pub.pem"
    pem.write_bytes(public_pem)
    a = Authenticator(
        AuthSettings(mode="jwt", jwt_algorithm="RS256", jwt_key_file=pem, jwt_issuer=ISS, jwt_audience=AUD)
    )
    assert a.authenticate(_token(private, "RS256")).name == "svc-a"
    # The classic confusion: an HS256 token "signed" with the public key as HMAC secret.
    import hashlib
    import hmac

    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = jwt.utils.base64url_encode(
        json.dumps({"sub": "x", "iss": ISS, "aud": AUD, "exp": int(time.time()) + 60}).encode()
    )
    signature = jwt.utils.base64url_encode(hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest())
    with pytest.raises(errors.Unauthenticated, match="Invalid token"):
        a.authenticate((header + b"." + payload + b"." + signature).decode())


def test_jwks_file_picks_the_key_by_kid(tmp_path: Path, rsa_keys: tuple[Any, bytes]) -> None:
    private, _ = rsa_keys
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = {
        "keys": [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key())), "kid": "k1", "alg": "RS256"},
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(other.public_key())), "kid": "k2", "alg": "RS256"},
        ]
    }
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    a = Authenticator(
        AuthSettings(
            mode="jwt",
            jwt_jwks_file=path,
            jwt_issuer=ISS,
            jwt_audience=AUD,
            jwt_scope_claim="realm.roles",
        )
    )
    p = a.authenticate(_token(private, "RS256", headers={"kid": "k1"}, scope=None, realm={"roles": ["write:x"]}))
    assert p.scopes.can_write("x")
    with pytest.raises(errors.Unauthenticated, match="Invalid token"):
        a.authenticate(_token(private, "RS256", headers={"kid": "k2"}))
    with pytest.raises(errors.Unauthenticated, match="unknown signing key"):
        a.authenticate(_token(private, "RS256", headers={"kid": "k9"}))


def test_a_cached_token_still_expires(tmp_path: Path) -> None:
    a = _hs(tmp_path, jwt_leeway_s=0)
    token = _token(HS_SECRET, exp=int(time.time()) + 1)
    assert a.authenticate(token).name == "svc-a"
    assert a.authenticate(token).name == "svc-a"  # from the cache
    time.sleep(2.1)
    with pytest.raises(errors.Unauthenticated, match="expired"):
        a.authenticate(token)


def test_short_hs256_secret_is_refused_at_start(tmp_path: Path) -> None:
    key = tmp_path / "short.key"
    key.write_bytes(b"secret")
    with pytest.raises(ValueError, match="32 bytes"):
        Authenticator(
            AuthSettings(mode="jwt", jwt_algorithm="HS256", jwt_key_file=key, jwt_issuer=ISS, jwt_audience=AUD)
        )


def test_no_auth_mode_gives_everyone_everything() -> None:
    p = Authenticator(AuthSettings()).authenticate(None)
    assert p.scopes.admin and p.scopes.can_read("x") and p.scopes.can_write("y")


# -- quotas ------------------------------------------------------------------------------------


def test_token_bucket_admits_the_burst_then_says_when_to_retry() -> None:
    metrics = Metrics()
    book = QuotaBook(QuotaSettings(records_per_s=10, burst_s=1), metrics)
    limits = book.limits_for(None)
    book.charge("a", limits, 10, 0)
    with pytest.raises(errors.Backpressure) as refused:
        book.charge("a", limits, 5, 0)
    assert refused.value.retry_after_s == 1
    book.charge("b", limits, 10, 0)  # buckets are per principal
    text = metrics.render().decode()
    assert 'gateway_quota_rejections_total{kind="records",principal="a"} 1.0' in text


def test_a_batch_larger_than_the_burst_goes_into_debt_and_waits_it_off() -> None:
    book = QuotaBook(QuotaSettings(bytes_per_s=100), Metrics())
    limits = book.limits_for(None)
    book.charge("a", limits, 1, 1000)  # a full bucket admits it ...
    with pytest.raises(errors.Backpressure) as refused:
        book.charge("a", limits, 1, 1)
    assert refused.value.retry_after_s >= 9  # ... and the debt is paid in time


def test_stream_quota_counts_open_streams_and_key_overrides_defaults() -> None:
    book = QuotaBook(QuotaSettings(max_streams=1, records_per_s=1), Metrics())
    limits = book.limits_for(Limits(max_streams=2))
    assert limits == Limits(records_per_s=1, max_streams=2)
    book.open_stream("a", limits)
    book.open_stream("a", limits)
    with pytest.raises(errors.Backpressure):
        book.open_stream("a", limits)
    book.close_stream("a", limits)
    book.open_stream("a", limits)


# -- Kafka secrets from files ------------------------------------------------------------------


def test_kafka_secrets_come_from_files_and_never_appear_in_errors(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cr3t-pw\n")
    s = Settings(kafka={"SASL_PASSWORD_FILE": str(secret), "sasl_username": "gateway"})  # type: ignore[arg-type]
    assert s.kafka_common()["sasl.password"] == "s3cr3t-pw"
    assert "sasl.password.file" not in s.kafka_common()
    with pytest.raises(ValidationError) as bad:
        Settings(kafka={"sasl.password.file": str(tmp_path / "missing")})  # type: ignore[arg-type]
    assert "sasl.password: cannot read" in str(bad.value)


def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", '["*"]')
    assert Settings().cors_origins == ["*"]
    monkeypatch.setenv("GATEWAY_AUTH__MODE", "api-key")
    with pytest.raises(ValidationError, match="GATEWAY_AUTH__API_KEYS_FILE"):
        Settings()


# -- JWKS URL ------------------------------------------------------------------------------------


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


def _remote(jwks: JwksServer, refresh_s: float = 0.2) -> Authenticator:
    return Authenticator(
        AuthSettings(mode="jwt", jwt_jwks_url=jwks.url, jwt_jwks_refresh_s=refresh_s, jwt_issuer=ISS, jwt_audience=AUD)
    )


def _eventually(check: Callable[[], object], timeout_s: float = 5.0) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except (errors.Unauthenticated, errors.Unavailable):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_jwks_url_is_fetched_at_start_and_a_rotated_key_is_picked_up(
    jwks: JwksServer, rsa_keys: tuple[Any, bytes]
) -> None:
    old, _ = rsa_keys
    new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.serve(("k1", old))
    a = _remote(jwks)
    assert jwks.requests == 1
    old_token = _token(old, "RS256", headers={"kid": "k1"})
    assert a.authenticate(old_token).name == "svc-a"
    # The IdP rotates: k2 in, k1 withdrawn. A token naming k2 is refused until the keys are fetched
    # again (its unknown kid asks for that at once, off the caller's thread), then accepted.
    jwks.serve(("k2", new))
    new_token = _token(new, "RS256", headers={"kid": "k2"}, sub="svc-b")
    assert _eventually(lambda: a.authenticate(new_token).name) == "svc-b"
    # The withdrawn key's token is refused even though it was verified (and cached) before.
    with pytest.raises(errors.Unauthenticated, match="unknown signing key"):
        a.authenticate(old_token)
    # A token signed with another key under a known kid still fails its signature check.
    with pytest.raises(errors.Unauthenticated, match="Invalid token"):
        a.authenticate(_token(old, "RS256", headers={"kid": "k2"}))


def test_jwks_url_down_at_start_is_503_until_it_answers(jwks: JwksServer, rsa_keys: tuple[Any, bytes]) -> None:
    private, _ = rsa_keys
    jwks.status = 500
    a = _remote(jwks)  # starts anyway: the IdP may come back
    token = _token(private, "RS256", headers={"kid": "k1"})
    with pytest.raises(errors.Unavailable, match="could not be fetched"):
        a.authenticate(token)
    jwks.status = 200
    jwks.serve(("k1", private))
    assert _eventually(lambda: a.authenticate(token).name) == "svc-a"
    # A document that does not parse later keeps the keys in force.
    jwks.document = {"keys": "nonsense"}
    time.sleep(0.3)
    assert a.authenticate(_token(private, "RS256", headers={"kid": "k1"}, sub="svc-c")).name == "svc-c"


def test_jwks_url_down_at_start_keeps_the_process_unready_and_the_probe_fetches_the_keys(
    jwks: JwksServer, rsa_keys: tuple[Any, bytes]
) -> None:
    private, _ = rsa_keys
    jwks.status = 503
    a = _remote(jwks)
    assert "have not been fetched" in (a.not_ready_reason() or "")
    jwks.status = 200
    jwks.serve(("k1", private))
    # No request arrives at an unready process: the readiness checks alone bring the keys.
    deadline = time.monotonic() + 5
    while a.not_ready_reason() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.not_ready_reason() is None
    assert a.authenticate(_token(private, "RS256", headers={"kid": "k1"})).name == "svc-a"
    # Keys at hand, the IdP going away later does not make the process unready (the keys are kept).
    jwks.status = 500
    time.sleep(0.3)
    assert a.not_ready_reason() is None
    assert Authenticator(AuthSettings()).not_ready_reason() is None


def test_jwks_url_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="one of"):
        AuthSettings(
            mode="jwt",
            jwt_jwks_url="https://idp.example/certs",
            jwt_jwks_file=Path(__file__),
            jwt_issuer=ISS,
            jwt_audience=AUD,
        )
    with pytest.raises(ValueError, match="http"):
        AuthSettings(mode="jwt", jwt_jwks_url="file:///etc/passwd", jwt_issuer=ISS, jwt_audience=AUD)
