"""No secret in any event: the built-in deny-list, key normalisation, and text scrubbing, through real capture.

Each red-team shape that once got a secret past `redact: [api_key]` is its own test; every test looks for the
secret in the whole exported record (every attribute), through the generated hot path and the generic path.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from auditrail import semconv
from auditrail.payload import PayloadPolicy
from auditrail.redaction import REDACT, REDACT_UNLESS_NUMBER, Redactor, normalise_key

SECRET = "hunter2-Zq93x"  # no well-known credential format: only the key or the shape around it gives it away
REDACTED = "[REDACTED]"

APP = '''
import collections
import json


Creds = collections.namedtuple("Creds", "user api_key")


class Client:
    """A plain object whose str() shows its key, as many SDK objects' reprs do."""

    def __init__(self, api_key):
        self.api_key = api_key

    def __str__(self):
        return f"Client(base_url='https://api.example.com', api_key='{self.api_key}')"


def act(tenant_id, data, note="", reason=""):
    return {"ok": True}


def act_creds(tenant_id, user, key):
    return Creds(user, key)


def act_client(tenant_id, key):
    return Client(key)


def call_upstream(tenant_id, key):
    raise PermissionError(f"upstream rejected api_key={key} for tenant {tenant_id}")
'''

YAML = """
    delivery: {mode: best_effort}
    redact: [api_key]
    events:
      - {target: rtapp.core:act, event: custom.act, tenant: tenant_id, reason: reason, payload: {data: data, note: note}}
      - {target: rtapp.core:act_creds, event: custom.creds, tenant: tenant_id, after: result}
      - {target: rtapp.core:act_client, event: custom.client, tenant: tenant_id, after: {client: result}}
      - {target: rtapp.core:call_upstream, event: custom.upstream, tenant: tenant_id}
"""


@pytest.fixture(params=["generated", "generic"])
def app(request: pytest.FixtureRequest, audit: Any) -> Any:
    """The red-team app, audited; `generic` forces every call through the one-by-one path."""
    audit.module("rtapp.core", APP)
    audit.instrument(YAML)
    module = importlib.import_module("rtapp.core")
    if request.param == "generic":
        for name in ("act", "act_creds", "act_client", "call_upstream"):
            getattr(module, name)._self_wrapper._gen = None
    return module


def exported(audit: Any, event: str) -> tuple[dict[str, Any], str]:
    """The one event of this type: its payload, and the text of every attribute of the exported record."""
    found = audit.one(event)
    return found["payload"], json.dumps(found["attrs"], ensure_ascii=False)


def assert_no_secret(text: str) -> None:
    assert "hunter2" not in text, text


@pytest.mark.parametrize("key", ["x-api-key", "api_key_id", "openai_api_key", "X_API_KEY", "apiKey"])
def test_keys_containing_api_key_are_redacted(app: Any, audit: Any, key: str) -> None:
    app.act("t1", {key: SECRET, "model": "gpt"})
    payload, text = exported(audit, "custom.act")
    assert payload["data"] == {key: REDACTED, "model": "gpt"}
    assert_no_secret(text)


def test_fullwidth_key_is_redacted(app: Any, audit: Any) -> None:
    app.act("t1", {"\uff41\uff50\uff49\uff3f\uff4b\uff45\uff59": SECRET})  # ａｐｉ＿ｋｅｙ
    payload, text = exported(audit, "custom.act")
    assert list(payload["data"].values()) == [REDACTED]
    assert_no_secret(text)


@pytest.mark.parametrize("key", ["\u0430pi_k\u0435y", "\u0391\u03a1\u0399_KEY", "p\u0430ssw\u043erd", "pass\u200bword"],
                         ids=["cyrillic-a-e", "greek-capitals", "cyrillic-password", "zero-width"])
def test_look_alike_keys_are_redacted(app: Any, audit: Any, key: str) -> None:
    app.act("t1", {key: SECRET})
    payload, text = exported(audit, "custom.act")
    assert payload["data"] == {key: REDACTED}
    assert_no_secret(text)


def test_namedtuple_fields_are_keys(app: Any, audit: Any) -> None:
    app.act_creds("t1", "bob", SECRET)
    payload, text = exported(audit, "custom.creds")
    assert payload["after"] == {"user": "bob", "api_key": REDACTED}
    assert_no_secret(text)


def test_plain_object_str_is_scrubbed(app: Any, audit: Any) -> None:
    app.act_client("t1", SECRET)
    payload, text = exported(audit, "custom.client")
    assert payload["after"]["client"] == f"Client(base_url='https://api.example.com', api_key='{REDACTED}')"
    assert_no_secret(text)


def test_json_text_inside_a_string_is_cleaned_as_json(app: Any, audit: Any) -> None:
    body = json.dumps({"model": "gpt", "auth": {"openai_api_key": SECRET}, "items": [{"password": SECRET}]})
    app.act("t1", {"body": body, "plain_json": '{"model": "gpt"}'})
    payload, text = exported(audit, "custom.act")
    assert json.loads(payload["data"]["body"]) == {"model": "gpt", "auth": REDACTED, "items": [{"password": REDACTED}]}
    assert payload["data"]["plain_json"] == '{"model": "gpt"}'  # nothing to clean: the text as written
    assert_no_secret(text)


def test_exception_message_is_scrubbed(app: Any, audit: Any) -> None:
    with pytest.raises(PermissionError, match=SECRET):  # the app still sees its own exception, unchanged
        app.call_upstream("t1", SECRET)
    payload, text = exported(audit, "custom.upstream")
    assert payload["error"] == {"type": "PermissionError",
                                "message": f"upstream rejected api_key={REDACTED} for tenant t1"}
    assert found_outcome(audit, "custom.upstream") == "failure"
    assert_no_secret(text)


def found_outcome(audit: Any, event: str) -> str:
    return audit.one(event)["attrs"][semconv.OUTCOME]


@pytest.mark.parametrize("text, expected", [
    ("Authorization: Bearer eyabc.def-ghi", "Authorization: Bearer [REDACTED]"),
    ("retry with header Bearer abc123def", "retry with header Bearer [REDACTED]"),
    ("GET https://api.example.com/v1?api_key=k3y&page=2", "GET https://api.example.com/v1?api_key=[REDACTED]&page=2"),
    ("postgres://app:s3cr3t@db.internal:5432/main", "postgres://app:[REDACTED]@db.internal:5432/main"),
    ("client_secret: abc def\nnext: 1", "client_secret: [REDACTED]\nnext: 1"),
    ("{'password1': 'p1', 'password2': 'p1', 'username': 'bob'}",
     "{'password1': '[REDACTED]', 'password2': '[REDACTED]', 'username': 'bob'}"),
    ("paid with 4242 4242 4242 4242 ok", "paid with [REDACTED] ok"),
    ("cards 4242-4242-4242-4242, 3782 822463 10005 and 6011111111111117.",
     "cards [REDACTED], [REDACTED] and [REDACTED]."),
    ("key sk_live_4eC39HqLyjWDarjtT1zdp7dc used", "key [REDACTED] used"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----", "[REDACTED]"),
], ids=["auth-header", "bearer", "query", "url-password", "colon", "repr", "card", "cards", "stripe-key", "pem"])
def test_secret_shapes_in_string_values_and_reason_are_scrubbed(app: Any, audit: Any, text: str, expected: str) -> None:
    app.act("t1", {"msg": text}, note=[text], reason=text)
    found = audit.one("custom.act")
    assert found["payload"]["data"] == {"msg": expected}
    assert found["payload"]["note"] == [expected]
    assert found["attrs"][semconv.REASON] == expected


@pytest.mark.parametrize("text", [
    "prompt 5f3a0c1e9b7d24680e1f3a5c7b9d0e2f4a6c8e0b1d3f5a7c9e1b3d5f7a9c0e2f",  # a sha256 hex digest
    "sent at 1733550000123 (ms) and 1733550000123456789 (ns)",  # timestamps: no card network's prefix
    "call +49 1511 2345678 or 4915112345678",  # phone numbers: too short for a Visa
    "order 4242424242424241 failed",  # card-shaped but not Luhn-valid
    "session 42424242-4242-4242-4242-424242424242",  # a UUID of digits only: not grouped as cards are
    "ratio 3:2, at 12:30, see https://docs.example.com/a?b=c", "Note: the token expired",
], ids=["hash", "timestamps", "phones", "not-luhn", "uuid", "plain-colons", "word-token"])
def test_ordinary_text_is_left_alone(app: Any, audit: Any, text: str) -> None:
    app.act("t1", {"msg": text})
    assert audit.one("custom.act")["payload"]["data"] == {"msg": text}


def test_token_counts_stay_and_secret_tokens_go(app: Any, audit: Any) -> None:
    usage = {"max_tokens": 1024, "prompt_tokens": 37, "completion_tokens": 12, "total_tokens": 49,
             "tokens_used": 49, "reasoning_tokens": 0.0, "tokenizer": "cl100k_base", "has_token": True}
    secrets = {"access_token": SECRET, "refresh_token": SECRET, "token": SECRET, "id_token": 123456,
               "session_token": [SECRET], "csrftoken": SECRET}
    app.act("t1", {**usage, **secrets}, note="max_tokens=1024 token=abcd")
    payload, text = exported(audit, "custom.act")
    secrets["id_token"] = 123456  # a number under a token key is a count: kept (see the README)
    assert payload["data"] == {**usage, **{k: v if isinstance(v, int) else REDACTED for k, v in secrets.items()}}
    assert payload["note"] == f"max_tokens=1024 token={REDACTED}"
    assert_no_secret(text)


def test_built_in_list_is_on_without_any_redact_key(audit: Any) -> None:
    audit.module("rtplain.core", "def act(data):\n    return None\n")
    audit.instrument("delivery: {mode: best_effort}\nevents:\n  - {target: rtplain.core:act, event: custom.act, payload: data}\n")
    importlib.import_module("rtplain.core").act({
        "password": SECRET, "new_password1": SECRET, "Cookie": SECRET, "Set-Cookie": SECRET,
        "Proxy-Authorization": SECRET, "card_number": "4242424242424242", "cvc": "123", "private_key": SECRET,
        "stripe_secret_key": SECRET, "sessionid": SECRET, "user": "bob", "author": "ann", "company": "acme"})
    payload = audit.one("custom.act")["payload"]
    assert {k for k, v in payload.items() if v != REDACTED} == {"user", "author", "company"}


def test_redact_adds_terms_and_redact_allow_keeps_whole_keys(audit: Any) -> None:
    audit.module("rtallow.core", "def act(data):\n    return None\n")
    audit.instrument("""
        delivery: {mode: best_effort}
        redact: [email]
        redact_allow: [password_policy, Token-Budget]
        events:
          - {target: rtallow.core:act, event: custom.act, payload: data}
        """)
    importlib.import_module("rtallow.core").act({
        "email": "bob@acme.io", "billing_email": "bob@acme.io", "password_policy": "strict",
        "token_budget": "large", "password": SECRET, "note": "email=bob@acme.io"})
    assert audit.one("custom.act")["payload"] == {
        "email": REDACTED, "billing_email": REDACTED, "password_policy": "strict", "token_budget": "large",
        "password": REDACTED, "note": f"email={REDACTED}"}


def test_programmatic_emit_is_cleaned_too(audit: Any) -> None:
    import auditrail

    audit.module("rtemit.core", "def nothing():\n    return None\n")
    audit.instrument("delivery: {mode: best_effort}\nevents:\n  - {target: rtemit.core:nothing, event: custom.none}\n")
    auditrail.emit("custom.emit", tenant="t1", payload={"headers": {"authorization": f"Basic {SECRET}"}},
                   after={"webhook": f"https://hooks.example.com/x?token={SECRET}"}, reason=f"rotated; password={SECRET}")
    found = audit.one("custom.emit")
    assert found["payload"] == {"headers": {"authorization": REDACTED},
                                "after": {"webhook": f"https://hooks.example.com/x?token={REDACTED}"}}
    assert found["attrs"][semconv.REASON] == f"rotated; password={REDACTED}"


def test_bytes_carrying_text_are_scrubbed_before_base64() -> None:
    import base64

    cleaned = PayloadPolicy().clean({"raw": f"api_key={SECRET}".encode(), "bin": b"\xff\x00"})
    assert base64.b64decode(cleaned["raw"].removeprefix("base64:")) == f"api_key={REDACTED}".encode()
    assert cleaned["bin"] == "base64:/wA="


def test_normalisation_and_verdicts() -> None:
    assert normalise_key("ＡＰＩ－Ｋｅｙ") == "apikey"
    assert normalise_key("p\u00e4ssw\u00f6rd") == "password"  # diacritics dropped
    assert normalise_key("\u0441\u043e\u043e\u043a\u0456\u0435") == "cookie"  # all Cyrillic
    red = Redactor(["pin"], allow=["pin_hint"])
    assert red.verdict("max_tokens") == REDACT_UNLESS_NUMBER and red.verdict("oauth_token") == REDACT_UNLESS_NUMBER
    assert red.verdict("tokenizer_secret") == REDACT  # an allowed word does not hide another term
    assert red.verdict("spinner") == REDACT  # `redact:` terms are substrings, as documented
    assert red.verdict("pin_hint") == 0 and red.verdict("tokenizer") == 0 and red.verdict("secretary") == 0


def test_a_failing_expression_is_logged_without_the_secret(audit: Any, caplog: pytest.LogCaptureFixture) -> None:
    audit.module("rtlog.core", '''
        class Vault:
            def __init__(self, key):
                self.key = key

            def check(self):
                raise ValueError(f"vault refused api_key={self.key}")


        def act(vault):
            return None
    ''')
    audit.instrument("delivery: {mode: best_effort}\nevents:\n"
                     "  - {target: rtlog.core:act, event: custom.act, payload: {state: vault.check()}}\n")
    module = importlib.import_module("rtlog.core")
    with caplog.at_level("WARNING", logger="auditrail"):
        module.act(module.Vault(SECRET))
    assert audit.one("custom.act")["payload"] == {"state": None}
    assert "vault refused api_key=[REDACTED]" in caplog.text and "hunter2" not in caplog.text


def test_redact_allow_must_be_a_list_of_strings() -> None:
    from auditrail.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"^audit\.yaml:1:15: redact_allow: must be a list of strings"):
        parse_config("redact_allow: password_policy\nevents:\n  - {target: a.b:c, event: custom.c}\n",
                     filename="audit.yaml", check_targets=False)
