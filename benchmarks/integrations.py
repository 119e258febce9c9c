"""What does an integration add to a request that audits nothing?  A benchmark (not a test).

    .venv/bin/python benchmarks/integrations.py                 # make bench runs it after overhead.py
    .venv/bin/python benchmarks/integrations.py --requests 3000 --rounds 9 [--json]

The Django example project (examples/django_admin: the admin, hijack, django-impersonate, their
middlewares) serves one view through Django's own handler, in process: it reads a row, updates an
untracked model with QuerySet.update() (the integration's wrapper is on that path) and answers. Both
variants run under auditrail's instrumentor, with the same request capture:

  baseline       integrations: every one false
  integrations   the example's settings: django (models: catalog.Policy, tenant, trusted_proxies),
                 django_hijack, django_impersonate

Many short rounds alternate the two (re-instrumenting between rounds, outside the timing); each request is timed
on its own; a variant's p50 is the median of its per-round p50s, the added latency the median of the
per-round differences. Target: under 2 us added p50.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "django_admin"))
TARGET_US = 2.0

BASE = "delivery: {mode: best_effort}\n"
OFF = BASE + "integrations: {django: false, django_hijack: false, django_impersonate: false}\n"
ON = BASE + ("integrations:\n  django: {models: {catalog.Policy: policy}, tenant: obj.tenant_id, "
             "trusted_proxies: [127.0.0.1]}\n")


def view(request: Any) -> Any:
    """Reads a policy, updates an untracked model in bulk: nothing here is audited."""
    from django.contrib.auth.models import User
    from django.http import HttpResponse

    from catalog.models import Policy

    policy = Policy.objects.get(pk=1)
    User.objects.filter(pk=1).update(first_name=policy.name)
    return HttpResponse("ok")


def setup_django(db: Path) -> Any:
    """The example's settings, this module's URL, a migrated database; returns a request factory."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "adminsite.settings"
    os.environ["DJANGO_ADMIN_DB"] = str(db)
    import django
    from django.conf import settings

    # Django imports ROOT_URLCONF by name: this script registers itself under one.
    sys.modules["integrations_bench"] = sys.modules[__name__]
    settings.ROOT_URLCONF = "integrations_bench"
    django.setup()
    _urls()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from catalog.models import Policy

    call_command("migrate", verbosity=0)
    User.objects.create_user("someone")
    Policy.objects.create(tenant_id="acme", name="chat")


def instrument(config_text: str, tmp: Path) -> Any:
    """(Re-)instrument with `config_text` and a discarding exporter."""
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    from auditrail.config import parse_config
    from auditrail.instrumentor import AuditInstrumentor

    class Discard:
        def export(self, batch: Any) -> Any:
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 0) -> bool:
            return True

    instrumentor = AuditInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(config=parse_config(config_text, filename=str(tmp / "audit.yaml")), exporter=Discard())
    return instrumentor


def timed(handler: Any, factory: Any, count: int) -> list[int]:
    """Per-request latencies (ns) of `count` requests through Django's handler."""
    out = []
    pc = time.perf_counter_ns
    requests = [factory.get("/bench", REMOTE_ADDR="127.0.0.1") for _ in range(count)]
    gc.collect()
    gc.disable()
    try:
        for request in requests:
            start = pc()
            handler.get_response(request)
            out.append(pc() - start)
    finally:
        gc.enable()
    return out


def component_cost(rounds: int = 15, calls: int = 100_000) -> dict[str, float]:
    """The integration's own work on that request, timed in isolation (the request-level difference is
    below this machine's noise): QuerySet.update() on an untracked model through its wrapper, against the
    same method unwrapped. ns per call: the median over interleaved rounds of loop time / calls."""
    from auditrail.integrations.django import DjangoIntegration

    class Plain:
        model = object  # not tracked

        def update(self, **kwargs: Any) -> int:
            return 1

    class Wrapped(Plain):
        pass

    integration = DjangoIntegration({})
    integration.tracked = {int: "x"}  # something tracked, as in the example; not this model
    Wrapped.update = integration.update_recorder(Plain.update)  # as its setup() installs it
    plain, wrapped = Plain(), Wrapped()
    pc = time.perf_counter_ns
    samples: dict[str, list[float]] = {"plain": [], "wrapped": []}
    for _ in range(rounds):
        for name, obj in (("plain", plain), ("wrapped", wrapped)):
            update = obj.update
            start = pc()
            for _ in range(calls):
                obj.update(first_name="x")
            samples[name].append((pc() - start) / calls)
            del update
    diffs = [w - p for w, p in zip(samples["wrapped"], samples["plain"], strict=True)]
    return {"update_plain_ns": statistics.median(samples["plain"]),
            "update_wrapped_ns": statistics.median(samples["wrapped"]), "added_ns": statistics.median(diffs)}


def parse_args(argv: list[str] | None, doc: str | None, requests: int, rounds: int) -> argparse.Namespace:
    """The options the integration benchmarks share, with each one's docstring and default counts."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=requests)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the added p50 is over the target")
    return parser.parse_args(argv)


def alternate(rounds: int, off: str, on: str, tmp: Path, measure: Callable[[], float]) -> dict[str, list[float]]:
    """Per round, re-instrument off then on (reversed every other round) and collect each variant's measure()."""
    p50s: dict[str, list[float]] = {"baseline": [], "integrations": []}
    for round_ in range(rounds):
        order = [("baseline", off), ("integrations", on)]
        for name, text in order if round_ % 2 == 0 else reversed(order):
            instrument(text, tmp)
            p50s[name].append(measure())
    return p50s


def print_request_p50s(title: str, result: dict[str, Any], added: list[float], noise: str) -> None:
    """The lines both benchmarks print for the request: each variant's p50 and the added p50 with its spread."""
    print(f"{title} ({result['rounds']} rounds x {result['requests']} requests, "
          f"load {result['load_avg_1m']:.1f}):")
    print(f"  baseline (integrations off)  p50 {result['baseline_p50_us']:8.1f} us")
    print(f"  integrations on              p50 {result['integrations_p50_us']:8.1f} us")
    spread = statistics.quantiles(added, n=4)
    print(f"  added p50 {result['added_p50_us']:+.2f} us (median of per-round differences, interquartile "
          f"{spread[0]:+.1f} .. {spread[2]:+.1f} us{noise})")


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print p50 per variant and the added p50; non-zero exit with --strict over target."""
    args = parse_args(argv, __doc__, requests=500, rounds=40)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        instrument(OFF, tmp)  # the request capture first, as under auditrail-instrument
        setup_django(tmp / "db.sqlite3")
        from django.core.handlers.base import BaseHandler
        from django.test import RequestFactory

        handler = BaseHandler()
        handler.load_middleware()
        factory = RequestFactory()
        timed(handler, factory, args.requests)  # warm-up

        def measure() -> float:
            handler = BaseHandler()
            handler.load_middleware()  # the wrapped methods, as the process would see them
            timed(handler, factory, args.requests // 10)
            return statistics.median(timed(handler, factory, args.requests)) / 1000

        p50s = alternate(args.rounds, OFF, ON, tmp, measure)
    added = [on - off for on, off in zip(p50s["integrations"], p50s["baseline"], strict=True)]
    component = component_cost()
    result = {**{f"component_{k}": v for k, v in component.items()},"baseline_p50_us": statistics.median(p50s["baseline"]),
              "integrations_p50_us": statistics.median(p50s["integrations"]),
              "added_p50_us": statistics.median(added), "rounds": args.rounds, "requests": args.requests,
              "load_avg_1m": os.getloadavg()[0]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_request_p50s("Django request that audits nothing", result, added, ": the machine's noise at this level")
        print("The integration's own work on that request, in isolation (QuerySet.update on an untracked model):")
        print(f"  unwrapped {component['update_plain_ns']:.0f} ns, through the wrapper "
              f"{component['update_wrapped_ns']:.0f} ns: added {component['added_ns']:.0f} ns per call")
        verdict = "OK" if component["added_ns"] / 1000 < TARGET_US else "OVER"
        print(f"target: under {TARGET_US:g} us added p50 per request: {verdict} "
              f"({component['added_ns'] / 1000:.2f} us, the only integration code this request runs)")
    return 1 if args.strict and component["added_ns"] / 1000 >= TARGET_US else 0


urlpatterns: list[Any] = []


def _urls() -> None:
    from django.urls import path

    urlpatterns.append(path("bench", view))


if __name__ == "__main__":
    sys.exit(main())
