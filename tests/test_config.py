"""audit.yaml validation: every mistake is named with its file, line, column and key, before the app runs."""

from __future__ import annotations

import hashlib
import re
import textwrap
import warnings

import pytest

from auditrail.config import ConfigError, ConfigWarning, load_config, parse_config
from auditrail.expressions import ExpressionError, compile_expression

GOOD_EVENT = "  - {target: m:f, event: custom.act}\n"


def error_of(text: str, *, check_targets: bool = False) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), filename="audit.yaml", check_targets=check_targets)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("servce_name: x\nevents:\n" + GOOD_EVENT, r"^audit\.yaml:1:1: servce_name: unknown key 'servce_name' \(did you mean 'service_name'\?\)"),
        ("events:\n  - target: m:f\n    event: custom.act\n    tenat: t\n",
         r"^audit\.yaml:4:5: events\[0\]\.tenat: unknown key 'tenat' \(did you mean 'tenant'\?\)"),
        ("events:\n  - target: m:f\n    event: custom.act\n    tenant: 'a +'\n",
         r"^audit\.yaml:4:13: events\[0\]\.tenant: bad expression 'a \+': syntax error"),
        ("events:\n  - target: m:f\n    event: custom.act\n    actor: x.__class__\n",
         r"^audit\.yaml:4:12: events\[0\]\.actor: bad expression 'x.__class__': access to private attribute"),
        ("events:\n  - target: m:f\n    event: custom.act\n    actor: open('f')\n",
         r"events\[0\]\.actor: bad expression .*unknown function 'open'"),
        ("events:\n  - target: m:f\n    event: custom.act\n    before: {h: sha256(result)}\n",
         r"^audit\.yaml:4:17: events\[0\]\.before\.h: 'sha256\(result\)' uses result/error"),
        ("events:\n  - target: mf\n    event: custom.act\n", r"^audit\.yaml:2:13: events\[0\]\.target: target 'mf' must look like"),
        ("events:\n  - target: m:f\n    event: Prompt Update\n", r"^audit\.yaml:3:12: events\[0\]\.event: event type 'Prompt Update' must be dotted"),
        ("events:\n  - target: m:f\n    event: custom.act\n    risk: severe\n", r"^audit\.yaml:4:11: events\[0\]\.risk: must be one of low, medium, high, critical"),
        ("events:\n  - target: m:f\n    event: custom.act\n    actor_type: 5\n", r"events\[0\]\.actor_type: must be one of user, service, system or an expression giving one, not 5"),
        ("events:\n  - event: custom.act\n", r"^audit\.yaml:2:5: events\[0\]: missing required key 'target'"),
        ("events: []\n", r"^audit\.yaml:1:9: events: must be a non-empty list"),
        ("events:\n  - just a string\n", r"events\[0\]: each event must be a mapping"),
        ("delivery: {mode: sometimes}\nevents:\n" + GOOD_EVENT, r"^audit\.yaml:1:18: delivery\.mode: must be one of durable, fail_closed, best_effort"),
        ("delivery: {on_full: drop}\nevents:\n" + GOOD_EVENT, r"^audit\.yaml:1:21: delivery\.on_full: must be one of block, refuse, not 'drop'"),
        ("delivery: {mod: durable}\nevents:\n" + GOOD_EVENT, r"delivery\.mod: unknown key 'mod' \(did you mean 'mode'\?\)"),
        ("context: {user: [x]}\nevents:\n" + GOOD_EVENT, r"context\.user: unknown key 'user'"),
        ("context: {actor: [param_name]}\nevents:\n" + GOOD_EVENT, r"context\.actor\[0\]: bad expression 'param_name': unknown name 'param_name' \(available: request\)"),
        ("redact: api_key\nevents:\n" + GOOD_EVENT, r"^audit\.yaml:1:9: redact: must be a list of strings"),
        ("payload_max_bytes: 10\nevents:\n" + GOOD_EVENT, r"payload_max_bytes: must be a number of at least 256"),
        ("events:\n  - target: m:f\n    event: custom.act\n    payload: {before: x}\n    before: {y: z}\n", r"events\[0\]\.payload\.before: payload\.before clashes"),
        ("events:\n  - target: m:f\n    event: custom.act\n    actor: [1, 2]\n", r"events\[0\]\.actor: must be an expression \(a string\), not a list"),
        ("events:\n  - target: m:f\n    event: custom.act\n    payload: {a: 'call(x)'}\n", r'call\(\) needs a literal "module:function" first'),
        ("service_name: a\nservice_name: b\nevents:\n" + GOOD_EVENT, r"^audit\.yaml:2:1: service_name: duplicate key"),
        ("events:\n  - {target: m:f, event: custom.act, tenant: self.get(a, b)}\n", r"^audit\.yaml:2:\d+: events\[0\]\.b\): unknown key 'b\)' \(looks like part of an expression: .*quote expressions"),
        ("- a list\n", r"^audit\.yaml:1:1: the top level must be a mapping"),
        ("", r"^audit\.yaml: the file is empty"),
    ],
)
def test_config_error_names_file_line_and_key(text: str, expected: str) -> None:
    assert re.search(expected, error_of(text)), error_of(text)


def test_impossible_targets_are_refused_when_checked(tmp_path, monkeypatch) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "cart.py").write_text(
        "class Cart:\n    def add(self, item, qty=1):\n        pass\n\nrenamed = Cart\n\ndef checkout(cart_id, *, coupon=None):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    def check(target: str, extra: str = "") -> str:
        return error_of(f"events:\n  - target: {target}\n    event: custom.act\n{extra}", check_targets=True)

    assert "module 'shop.missing' not found on sys.path" in check("shop.missing:f")
    assert "impossible target: shop.cart defines no 'pay'" in check("shop.cart:pay")
    assert "impossible target: shop.cart:Cart defines no 'remove'" in check("shop.cart:Cart.remove")
    assert "is a class; target one of its methods" in check("shop.cart:Cart")
    assert re.search(r"events\[0\]\.tenant: bad expression 'tenant_id': unknown name 'tenant_id' \(available: .*cart_id.*coupon",
                     check("shop.cart:checkout", "    tenant: tenant_id\n"))
    assert "unknown name 'result'" in check("shop.cart:Cart.add", "    before: {x: result}\n")
    assert "actor_type: must be one of user, service, system or an expression giving one, not 'robot'" in check(
        "shop.cart:Cart.add", "    actor_type: robot\n")
    # valid targets (methods, keyword-only params, names bound by assignment) pass
    for target, extra in (("shop.cart:Cart.add", "    payload: {item: item, qty: qty, who: self}\n"),
                          ("shop.cart:checkout", "    payload: {c: coupon, r: result}\n"),
                          ("shop.cart:renamed", "")):
        parse_config(f"events:\n  - target: {target}\n    event: custom.act\n{extra}", check_targets=True)


def test_request_attributes_auditrails_view_lacks_are_refused_where_request_is_that_view(tmp_path, monkeypatch) -> None:
    """`context: {actor: [request.user.username]}` passed check, then failed on every event (the walk-through's
    second papercut): in context:, and in entries whose target has no `request` parameter, `request` is
    auditrail's RequestInfo; a target's own `request` parameter (a Django view, ModelAdmin.save_model) is free."""
    (tmp_path / "desk.py").write_text("def save(request, obj):\n    pass\n\ndef plain(tenant_id):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = error_of("context:\n  actor: [request.user.username]\nevents: []\n")
    assert message.startswith("audit.yaml:2:11: context.actor[0]: bad expression 'request.user.username': "
                              "`request` in context: is auditrail's view of the HTTP request, which has no 'user'")
    assert "client, forwarded_for, headers, method, path, query_string, raw, scheme" in message
    assert "context.impersonation.marker: bad expression" in error_of(
        "context:\n  impersonation: {marker: 'request.session.get(\"k\")'}\nevents: []\n")
    assert "the target has no `request` parameter) is auditrail's view of the HTTP request, which has no 'form'" in \
        error_of("events:\n  - target: desk:plain\n    event: custom.act\n    after: {f: request.form}\n",
                 check_targets=True)
    parse_config("context:\n  source_ip: [request.forwarded_for, request.client.host]\n"
                 "  actor: ['request.headers.get(\"x-user\")']\nevents:\n  - target: desk:save\n    event: custom.act\n"
                 "    actor: request.user.username\n    payload: {m: request.session.get('k'), p: request.path}\n"
                 "  - target: desk:plain\n    event: custom.act\n    payload: {p: request.path, t: tenant_id}\n",
                 check_targets=True)


def test_missing_category_fields_warn_with_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parse_config("events:\n  - target: m:f\n    event: prompt.update\n", filename="audit.yaml")
    messages = [str(w.message) for w in caught if issubclass(w.category, ConfigWarning)]
    assert messages == ["audit.yaml:2: prompt.update events should carry before, after (see the event types table in the README)"]


def test_unreadable_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read audit config"):
        load_config(tmp_path / "missing.yaml")


def test_design_md_example_parses() -> None:
    config = parse_config(textwrap.dedent('''
        service_name: assistant-admin
        delivery: {mode: durable, spool_dir: .auditrail/spool}
        context:
          actor: [baggage("enduser.id"), call("myapp.auth:current_user_id")]
          tenant: [baggage("audit.tenant_id")]
          source_ip: [request.client.host]
        redact: [api_key, password, token, secret]
        events:
          - target: myapp.prompts:PromptStore.update
            event: prompt.update
            risk: high
            tenant: tenant_id
            actor: editor
            reason: reason
            before: {prompt_hash: sha256(self.get(tenant_id))}
            after: {prompt_hash: sha256(new_text)}
          - target: myapp.crawler:run_crawl
            event: crawl.run
            tenant: tenant_id
            payload: {domain: domain, run_id: result.run_id, pages: result.pages, triggered_by: trigger}
        '''))
    assert config.service_name == "assistant-admin"
    assert [e.event for e in config.events] == ["prompt.update", "crawl.run"]
    assert config.events[0].module == "myapp.prompts" and config.events[0].qualname == "PromptStore.update"
    assert len(config.context["actor"]) == 2


@pytest.mark.parametrize(
    "source",
    ["x.__class__", "__import__('os')", "lambda: 1", "[a for a in b]", "x._private", "'{0.__class__}'.format(x)",
     "eval('1')", "getattr(x, 'y')", "sha256", "x := 1", "(yield)", "a if b else __builtins__"],
)
def test_expression_language_rejects_unsafe_constructs(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


def test_expression_language_evaluates_what_audit_yaml_needs() -> None:
    ns = {"tenant_id": "acme", "result": {"pages": [1, 2, 3]}, "n": 5}
    assert compile_expression("len(result['pages'])").evaluate(ns) == 3
    assert compile_expression("f'{tenant_id}-{n * 2}'").evaluate(ns) == "acme-10"
    assert compile_expression("'big' if n > 3 else 'small'").evaluate(ns) == "big"
    assert compile_expression("coalesce(None, tenant_id)").evaluate(ns) == "acme"
    assert compile_expression("sha256(tenant_id)").evaluate(ns) == \
        hashlib.sha256(b"acme").hexdigest()
    assert compile_expression("sha256(None)").evaluate(ns) is None
    assert compile_expression("tenant_id.upper()").evaluate(ns) == "ACME"


@pytest.mark.parametrize("text", ["", "abc", "héllo wörld", "emoji \U0001f389", "x" * 5000, "\x00\n\"\\", "\ud800"])
def test_sha256_of_a_str_natively_equals_hashlib_of_its_utf8(text):
    from auditrail.native import native_function

    native = native_function("sha256_text")
    if native is None:
        pytest.skip("the native core is not built (make install with cargo), or predates sha256_text")
    try:
        expected = hashlib.sha256(text.encode("utf-8")).hexdigest()
    except UnicodeEncodeError:  # a lone surrogate: both refuse it alike
        with pytest.raises(UnicodeEncodeError):
            native(text)
        return
    assert native(text) == expected
    assert compile_expression("sha256(x)").evaluate({"x": text}) == expected
