"""When each key of an event is evaluated (README, "When each key is evaluated").

Identity (`tenant`, `actor`, `actor_type`, `source_ip`, and `reason`, `approval_id`) and its `context:`
defaults are read before the call unless the expression names `result` or `error`; `before` before;
`when`, `after`, `payload` after. After a failure `result` is None and every expression is evaluated.
Both wrapper paths (the generated function and the one-by-one generic path) follow it, and so does a
real Django app with django-hijack, run zero-code in a subprocess.
"""

from __future__ import annotations

import asyncio
import importlib
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import auditrail
from auditrail import semconv
from test_launcher import AUDITRAIL_INSTRUMENT, events, run

APP = '''
class Session:
    """A login session: switching user (a login, an impersonation) changes who is acting."""

    def __init__(self):
        self.user = "ops@vendor.io"
        self.tenant = "vendor"

    def switch(self, to, tenant):
        self.user, self.tenant = to, tenant
        return {"user": to}

    def switch_and_fail(self, to, tenant):
        self.user, self.tenant = to, tenant
        raise PermissionError(f"{to} is locked")


SESSION = Session()


def current_user():
    return SESSION.user


def current_tenant():
    return SESSION.tenant


def hijack(to, tenant):
    return SESSION.switch(to, tenant)


def hijack_reported(to, tenant):
    return SESSION.switch(to, tenant)


async def hijack_async(to, tenant):
    return SESSION.switch(to, tenant)


def hijack_unmirrorable(to, tenant, __via=None):  # a signature the generated function cannot mirror
    return SESSION.switch(to, tenant)


def pages(n):
    if n < 0:
        raise ValueError(f"bad page count {n}")
    return {"pages": n}
'''

YAML = """
    context:
      actor: [call("appev.auth:current_user")]
      tenant: [call("appev.auth:current_tenant")]
    events:
      - target: appev.auth:Session.switch
        event: session.switch
        actor: self.user
        tenant: self.tenant
        reason: f"switch to {self.user}"
        payload: {to: to, user_after: self.user}
      - target: appev.auth:Session.switch_and_fail
        event: session.switch_failed
        actor: self.user
        payload: {user_after: self.user, user: 'result["user"]', ok: result is not None}
      - {target: appev.auth:hijack, event: session.hijack}
      - {target: appev.auth:hijack_async, event: session.hijack_async}
      - {target: appev.auth:hijack_unmirrorable, event: session.hijack_unmirrorable, reason: "'ticket 9'"}
      - target: appev.auth:hijack_reported
        event: session.hijack_reported
        actor: 'result["user"]'
      - target: appev.auth:pages
        event: job.pages
        tenant: "'acme'"
        payload:
          pages: 'result["pages"]'
          done: result is not None
          failed: error is not None
          kind: str(error) if error else "ok"
    """


@pytest.fixture(params=["generated", "generic"])
def auth(request, audit):
    # A package of its own per test: call() keeps the functions it resolved for the rest of the process.
    package = "appev_" + "".join(c if c.isalnum() else "_" for c in request.node.name)
    audit.module(f"{package}.auth", APP)
    audit.instrument(YAML.replace("appev.", f"{package}."))
    module = importlib.import_module(f"{package}.auth")
    wrappers = [module.Session.__dict__["switch"]._self_wrapper, module.Session.__dict__["switch_and_fail"]._self_wrapper,
                module.hijack._self_wrapper, module.hijack_async._self_wrapper, module.hijack_reported._self_wrapper,
                module.pages._self_wrapper]
    assert all(w._gen is not None for w in wrappers)
    if request.param == "generic":
        for wrapper in wrappers:
            wrapper._gen = None  # every call takes the one-by-one path
    return module


def test_identity_expressions_are_read_before_the_call_and_payload_after(audit, auth):
    auth.SESSION.switch("bob@acme.io", "acme")
    event = audit.one("session.switch")
    assert event["attrs"][semconv.ACTOR] == "ops@vendor.io"  # who started the switch, not who it became
    assert event["attrs"][semconv.TENANT] == "vendor"
    assert event["attrs"][semconv.REASON] == "switch to ops@vendor.io"
    assert event["payload"] == {"to": "bob@acme.io", "user_after": "bob@acme.io"}


def test_context_defaults_are_read_before_the_call(audit, auth):
    auth.hijack("bob@acme.io", "acme")
    event = audit.one("session.hijack")
    assert event["attrs"][semconv.ACTOR] == "ops@vendor.io"
    assert event["attrs"][semconv.TENANT] == "vendor"


def test_a_target_whose_signature_cannot_be_mirrored_follows_the_same_rule(audit, auth):
    assert auth.hijack_unmirrorable._self_wrapper._gen is None  # always the generic path
    auth.hijack_unmirrorable("bob@acme.io", "acme")
    event = audit.one("session.hijack_unmirrorable")
    assert event["attrs"][semconv.ACTOR] == "ops@vendor.io" and event["attrs"][semconv.TENANT] == "vendor"
    assert event["attrs"][semconv.REASON] == "ticket 9"


def test_an_async_target_reads_its_context_defaults_before_the_call(audit, auth):
    assert asyncio.run(auth.hijack_async("bob@acme.io", "acme")) == {"user": "bob@acme.io"}
    event = audit.one("session.hijack_async")
    assert event["attrs"][semconv.ACTOR] == "ops@vendor.io" and event["attrs"][semconv.TENANT] == "vendor"


def test_audit_context_is_read_before_the_call(audit, auth):
    with auditrail.audit_context(actor="ann@vendor.io"):
        auth.hijack("bob@acme.io", "acme")
    assert audit.one("session.hijack")["attrs"][semconv.ACTOR] == "ann@vendor.io"


def test_identity_naming_result_is_read_after_the_call(audit, auth):
    auth.hijack_reported("bob@acme.io", "acme")
    event = audit.one("session.hijack_reported")
    assert event["attrs"][semconv.ACTOR] == "bob@acme.io"
    assert event["attrs"][semconv.TENANT] == "vendor"  # its context default: before the call


def test_a_context_default_empty_before_the_call_stays_empty(audit, auth):
    """The defaults are not read again after the call: a login's user is not its own actor."""
    auth.SESSION.user = None
    auth.hijack("bob@acme.io", "acme")
    event = audit.one("session.hijack")
    assert semconv.ACTOR not in event["attrs"] and event["attrs"][semconv.ACTOR_TYPE] == "system"


def test_after_a_failed_call_result_is_none_and_every_expression_is_evaluated(audit, auth):
    with pytest.raises(ValueError, match="bad page count -1"):
        auth.pages(-1)
    with pytest.raises(PermissionError):
        auth.SESSION.switch_and_fail("eve@acme.io", "acme")
    failed = audit.one("job.pages")
    assert failed["attrs"][semconv.OUTCOME] == "failure"
    assert failed["payload"]["done"] is False and failed["payload"]["failed"] is True
    assert failed["payload"]["kind"] == "bad page count -1"
    # result["pages"] of None raises: the field is empty, as expected after a failure, and not counted.
    assert failed["payload"]["pages"] is None
    assert audit.counters.extractor_errors == 0
    switch = audit.one("session.switch_failed")
    assert switch["attrs"][semconv.ACTOR] == "ops@vendor.io"  # read before the call, kept after its failure
    assert switch["payload"]["user_after"] == "eve@acme.io" and switch["payload"]["ok"] is False


def test_after_a_good_call_error_is_none_and_expressions_naming_it_are_evaluated(audit, auth):
    auth.pages(3)
    event = audit.one("job.pages")
    assert event["payload"] == {"pages": 3, "done": True, "failed": False, "kind": "ok"}
    assert audit.counters.extractor_errors == 0


# --- a real Django app: model and queryset deletes, django-hijack's acquire --------------------------

DJANGO_FILES = {
    "shop/__init__.py": "",
    "shop/models.py": """
        from django.db import models


        class Product(models.Model):
            name = models.CharField(max_length=50)
            tenant = models.CharField(max_length=50)

            class Meta:
                app_label = "shop"

            def __str__(self):
                return f"product {self.name}"
    """,
    "site_urls.py": """
        from django.urls import include, path

        urlpatterns = [path("hijack/", include("hijack.urls"))]
    """,
    "main.py": """
        import django
        from django.conf import settings

        settings.configure(
            SECRET_KEY="not-a-secret", ALLOWED_HOSTS=["testserver"], ROOT_URLCONF="site_urls", USE_TZ=True,
            INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                            "hijack", "shop"],
            MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                        "django.contrib.auth.middleware.AuthenticationMiddleware"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        )
        django.setup()

        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.test import Client

        from shop.models import Product

        call_command("migrate", run_syncdb=True, verbosity=0)
        admin = User.objects.create_superuser("admin", "admin@vendor.io", "pw")
        bob = User.objects.create_user("bob", "bob@acme.io", "pw")
        for name, tenant in (("lamp", "acme"), ("desk", "acme"), ("sofa", "acme"), ("rug", "globex")):
            Product.objects.create(name=name, tenant=tenant)

        Product.objects.get(name="lamp").delete()
        print("updated", Product.objects.filter(tenant="acme").update(tenant="acme-eu"))
        print("deleted", Product.objects.filter(tenant="acme-eu").delete()[0])

        client = Client()
        client.force_login(admin)
        response = client.post("/hijack/acquire/", {"user_pk": bob.pk})
        print("acquire", response.status_code, client.session.get("hijack_history"))
    """,
}

DJANGO_YAML = """
events:
  # Every row deletion. The row's pk is gone after delete(): read it in `before`.
  - target: django.db.models.base:Model.delete
    event: record.delete
    before: {pk: self.pk, row: str(self)}
    payload: {pk_after_delete: self.pk}
  # Bulk deletes and updates (the admin's "delete selected"): a cleared queryset counts 0 afterwards.
  - target: django.db.models.query:QuerySet.delete
    event: record.bulk_delete
    before: {count: self.count()}
    after: {deleted: 'result[0]'}
    payload: {model: str(self.model)}
  - target: django.db.models.query:QuerySet.update
    event: record.bulk_update
    before: {count: self.count()}
    after: {updated: result}
    payload: {model: str(self.model), changes: kwargs}
  # django-hijack logs the hijacker in as the user during the call: the actor is read before it.
  - target: hijack.views:AcquireUserView.post
    event: user.hijack
    actor: request.user.username
    payload: {impersonated: request.user.username}
"""


@dataclass
class DjangoRun:
    stdout: str
    events: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def django_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoRun]:
    """The Django app run once as `auditrail-instrument python main.py` (file exporter)."""
    pytest.importorskip("hijack")
    root = tmp_path_factory.mktemp("django_evaltime")
    app = root / "app"
    for rel, source in DJANGO_FILES.items():
        path = app / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    (app / "audit.yaml").write_text(DJANGO_YAML)
    out = root / "events.jsonl"
    proc = run([AUDITRAIL_INSTRUMENT, "python", "main.py"], app, AUDITRAIL_EXPORTER=f"file:{out}")
    assert proc.returncode == 0, proc.stderr
    yield DjangoRun(proc.stdout, events(Path(out)))


def test_django_row_delete_records_the_pk_read_before_the_call(django_run: DjangoRun) -> None:
    (event,) = [e for e in django_run.events["record.delete"] if e["payload"]["before"]["row"] == "product lamp"]
    assert event["payload"]["before"]["pk"] == 1
    assert event["payload"]["pk_after_delete"] is None  # what `payload: {pk: self.pk}` would have recorded


def test_django_queryset_delete_and_update_count_the_rows_before_the_call(django_run: DjangoRun) -> None:
    assert "updated 2" in django_run.stdout and "deleted 2" in django_run.stdout
    (update,) = [e for e in django_run.events["record.bulk_update"] if "shop.models.Product" in e["payload"]["model"]]
    assert update["payload"]["before"] == {"count": 2} and update["payload"]["after"] == {"updated": 2}
    assert update["payload"]["changes"] == {"tenant": "acme-eu"}
    (delete,) = [e for e in django_run.events["record.bulk_delete"] if "shop.models.Product" in e["payload"]["model"]]
    assert delete["payload"]["before"] == {"count": 2} and delete["payload"]["after"] == {"deleted": 2}


def test_django_hijack_acquire_is_attributed_to_the_hijacker(django_run: DjangoRun) -> None:
    assert "acquire 302 ['1']" in django_run.stdout  # the hijack happened: admin (pk 1) in the history
    (event,) = django_run.events["user.hijack"]
    assert event["attributes"]["audit.outcome"] == "success"
    assert event["attributes"]["enduser.id"] == "admin"
    assert event["payload"]["impersonated"] == "bob"  # payload: after the call, the session's new user
