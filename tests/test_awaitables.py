"""A target returning work still running (a future, an asyncio task, a coroutine, a Twisted Deferred):
its event is recorded when that work completes, with its value or its failure, on both wrapper paths."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import importlib
import pytest
from twisted.internet import defer

from auditrail import semconv

APP = '''
import asyncio
import concurrent.futures
import functools
import threading

from twisted.internet import defer

POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1)
GATE = threading.Event()
PENDING = {}


def _crawl(domain):
    GATE.wait(10)
    if domain.endswith(".invalid"):
        raise ConnectionError(f"cannot reach {domain}")
    return {"pages": 7}


def submit_crawl(tenant_id, domain):
    return POOL.submit(_crawl, domain)


async def _fetch(domain):
    await asyncio.sleep(0.01)
    if domain.endswith(".invalid"):
        raise ConnectionError(f"cannot reach {domain}")
    return {"pages": 3}


def schedule_fetch(tenant_id, domain):
    return asyncio.ensure_future(_fetch(domain))


def _passthrough(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):  # a sync decorator around an async function: returns the coroutine
        return fn(*args, **kwargs)
    return call


@_passthrough
async def fetch_later(tenant_id, domain):
    return await _fetch(domain)


def start_job(tenant_id, job):
    d = defer.Deferred()
    PENDING[job] = d
    return d
'''

YAML = """
    events:
      - {target: appaw.jobs:submit_crawl, event: job.crawl, tenant: tenant_id,
         payload: {domain: domain, pages: 'result["pages"]', done: result is not None}}
      - {target: appaw.jobs:schedule_fetch, event: job.fetch, tenant: tenant_id,
         payload: {domain: domain, pages: 'result["pages"]'}}
      - {target: appaw.jobs:fetch_later, event: job.later, tenant: tenant_id,
         payload: {domain: domain, pages: 'result["pages"]'}}
      - {target: appaw.jobs:start_job, event: job.run, tenant: tenant_id, payload: {job: job, value: result}}
    """

TARGETS = ("submit_crawl", "schedule_fetch", "fetch_later", "start_job")


@pytest.fixture(params=["generated", "generic"])
def jobs(request, audit):
    audit.module("appaw.jobs", APP)
    audit.instrument(YAML)
    module = importlib.import_module("appaw.jobs")
    wrappers = [getattr(module, name)._self_wrapper for name in TARGETS]
    assert all(w._gen is not None for w in wrappers)
    if request.param == "generic":
        for wrapper in wrappers:
            wrapper._gen = None
    module.GATE.clear()
    yield module
    module.GATE.set()
    module.POOL.shutdown(wait=True)


def test_concurrent_future_event_is_recorded_when_the_work_completes(audit, jobs):
    future = jobs.submit_crawl("acme", "example.com")
    assert isinstance(future, concurrent.futures.Future)  # the caller gets the very same future
    assert audit.events() == []  # the work has not run: no event yet
    jobs.GATE.set()
    assert future.result(10) == {"pages": 7}
    jobs.POOL.shutdown(wait=True)  # its done-callbacks ran in the worker thread
    event = audit.one("job.crawl")
    assert event["attrs"][semconv.OUTCOME] == "success"
    assert event["attrs"][semconv.TENANT] == "acme"
    assert event["payload"] == {"domain": "example.com", "pages": 7, "done": True}


def test_concurrent_future_failure_is_a_failure_event_and_the_caller_still_gets_it(audit, jobs):
    jobs.GATE.set()
    future = jobs.submit_crawl("acme", "down.invalid")
    with pytest.raises(ConnectionError, match="cannot reach down.invalid"):
        future.result(10)
    jobs.POOL.shutdown(wait=True)
    event = audit.one("job.crawl")
    assert event["attrs"][semconv.OUTCOME] == "failure"
    assert event["payload"]["error"] == {"type": "ConnectionError", "message": "cannot reach down.invalid"}
    # After a failure `result` is None and every expression is still evaluated: `done` is False; the
    # subscript of None leaves `pages` empty without counting as an extractor failure.
    assert event["payload"]["pages"] is None and event["payload"]["done"] is False
    assert audit.counters.extractor_errors == 0


def test_cancelled_future_is_a_failure_event(audit, jobs):
    blocker = jobs.submit_crawl("acme", "first.example")  # occupies the only worker
    queued = jobs.submit_crawl("acme", "second.example")
    assert queued.cancel()
    jobs.GATE.set()
    blocker.result(10)
    jobs.POOL.shutdown(wait=True)
    events = {e["payload"]["domain"]: e for e in audit.events("job.crawl")}
    assert events["first.example"]["attrs"][semconv.OUTCOME] == "success"
    assert events["second.example"]["attrs"][semconv.OUTCOME] == "failure"
    assert events["second.example"]["payload"]["error"]["type"] == "CancelledError"


def test_asyncio_task_event_follows_the_task_and_its_exception_stays_unretrieved(audit, jobs):
    async def main():
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
        ok = jobs.schedule_fetch("acme", "example.com")
        assert isinstance(ok, asyncio.Task)
        assert audit.events() == []
        assert await ok == {"pages": 3}
        failing = jobs.schedule_fetch("acme", "down.invalid")
        await asyncio.sleep(0.05)  # it fails; nobody looks at its exception
        assert failing.done()
        del failing
        gc.collect()
        return reported

    reported = asyncio.run(main())
    # asyncio still reports the exception nobody retrieved: recording it did not mark it retrieved.
    assert any("exception was never retrieved" in message for message in reported), reported
    ok, failed = audit.events("job.fetch")
    assert ok["attrs"][semconv.OUTCOME] == "success" and ok["payload"]["pages"] == 3
    assert failed["attrs"][semconv.OUTCOME] == "failure"
    assert failed["payload"]["error"] == {"type": "ConnectionError", "message": "cannot reach down.invalid"}


def test_coroutine_returned_by_a_plain_function_is_recorded_when_awaited(audit, jobs):
    coro = jobs.fetch_later("acme", "example.com")
    assert asyncio.iscoroutine(coro)
    assert audit.events() == []
    assert asyncio.run(coro) == {"pages": 3}
    with pytest.raises(ConnectionError):
        asyncio.run(jobs.fetch_later("acme", "down.invalid"))
    ok, failed = audit.events("job.later")
    assert ok["attrs"][semconv.OUTCOME] == "success" and ok["payload"]["pages"] == 3
    assert failed["attrs"][semconv.OUTCOME] == "failure" and failed["payload"]["error"]["type"] == "ConnectionError"


def test_deferred_event_waits_for_it_and_the_chain_keeps_its_value_and_its_failure(audit, jobs):
    good = jobs.start_job("acme", "reindex")
    bad = jobs.start_job("acme", "purge")
    assert good is jobs.PENDING["reindex"] and isinstance(good, defer.Deferred)
    assert audit.events() == []
    seen: list[object] = []
    good.addCallback(seen.append)
    bad.addErrback(lambda failure: seen.append(failure.value))
    jobs.PENDING["reindex"].callback(42)
    jobs.PENDING["purge"].errback(PermissionError("not allowed"))
    # The app's own callbacks see the value and the failure unchanged.
    assert seen[0] == 42 and isinstance(seen[1], PermissionError)
    by_job = {e["payload"]["job"]: e for e in audit.events("job.run")}
    assert by_job["reindex"]["attrs"][semconv.OUTCOME] == "success" and by_job["reindex"]["payload"]["value"] == 42
    assert by_job["purge"]["attrs"][semconv.OUTCOME] == "failure"
    assert by_job["purge"]["payload"]["error"] == {"type": "PermissionError", "message": "not allowed"}


def test_deferred_failure_nobody_handles_is_still_unhandled(audit, jobs):
    """Recording a failure does not consume it: Twisted still reports it as unhandled when collected."""
    from twisted.logger import globalLogPublisher

    logged: list[str] = []

    def observer(event: dict) -> None:
        if event.get("log_failure") is not None:
            logged.append(str(event["log_failure"].value))

    globalLogPublisher.addObserver(observer)
    try:
        jobs.start_job("acme", "orphan")
        jobs.PENDING.pop("orphan").errback(RuntimeError("lost"))
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert logged == ["lost"]
    assert audit.one("job.run")["attrs"][semconv.OUTCOME] == "failure"


def test_work_completing_in_another_thread_keeps_the_calls_trace_context(audit, jobs):
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        future = jobs.submit_crawl("acme", "example.com")
    jobs.GATE.set()  # it completes in the pool's thread, outside the span
    future.result(10)
    jobs.POOL.shutdown(wait=True)
    record = audit.one("job.crawl")["record"].log_record
    assert record.trace_id == span.get_span_context().trace_id
    assert record.span_id == span.get_span_context().span_id
