"""How much latency does auditing add to one call?  A benchmark (not a test) of the audit hot path.

Run it from the repository root:

    make bench                                    # = .venv/bin/python benchmarks/overhead.py
    .venv/bin/python benchmarks/overhead.py --iterations 50000 --rounds 7
    .venv/bin/python benchmarks/overhead.py --json results.json   # also dump the numbers (--json alone: stdout)
    .venv/bin/python benchmarks/overhead.py --breakdown           # plus the cost of each part of the audited call
    .venv/bin/python benchmarks/overhead.py --profile 20000       # plus a cProfile of the audited call
    .venv/bin/python benchmarks/overhead.py --strict              # exit 1 when a target check fails

One run measures, side by side, the per-call latency (p50 and p99, microseconds) of:

  plain           PromptStore.update(self, tenant_id, new_text, editor, reason) on an in-memory dict store
                  (a real module written to a temp dir and imported, like an app's own code)
  wrapt           the same call behind a do-nothing wrapt.wrap_function_wrapper (the floor of any wrapping)
  audited         the same call audited zero-code from an audit.yaml (DESIGN.md's prompt.update example:
                  tenant/actor/reason from parameters, before/after sha256 of the old/new prompt), through
                  AuditInstrumentor().instrument(config=..., exporter=DiscardExporter()), best_effort
  emit->Batch     what a user would hand-write instead: the call plus an OTel SDK Logger.emit of 8 attributes
                  (event_name, severity, timestamp) into BatchLogRecordProcessor(DiscardExporter())
  emit->Simple    for reference: the call plus the same emit into SimpleLogRecordProcessor(DiscardExporter())
  stdlib logging  for reference: the call plus logging.info of a similar message to a FileHandler (temp dir)

and the latency each ADDS over the plain call. The two target checks printed at the end:
  audited p50 added latency <= emit->Batch p50 added latency, and audited p50 added latency <= 15 us.

Methodology (the machine is noisy, so everything is relative and interleaved):
  * each variant runs the identical method body (three textual copies of one class, so the plain, the
    wrapt-wrapped and the audited method can all be live at once), called as `store.update(...)` so the
    attribute lookup that creates wrapt's bound wrapper is included;
  * every call is timed on its own with time.perf_counter_ns; the cost of the two timer calls (measured as
    an empty statement each round) is subtracted from every p50/p99;
  * after a warm-up, the variants run in ROUNDS (default 5) of N timed calls each (default 20,000), in a
    rotated order each round; a variant's p50/p99 is the median of its per-round p50s/p99s, and its added
    latency is the median of the per-round differences to the plain call of the same round;
  * the garbage collector is disabled while a block of calls is timed (gc.collect() before it) unless
    --gc is given: pauses of the collector are then not charged to whichever call happened to trigger them;
  * the auditrail drain thread (and the SDK batch worker) run during the timing as in real use: their
    export work competes for the GIL and is part of the cost. After each block, outside the timing, both
    pipelines are flushed so no queue grows across blocks (auditrail's memory spool caps at 100k events);
  * at the end every audited call must have produced exactly one exported event (checked and printed).

--breakdown prices each part of the audited call by stubbing it out (e.g. the sha256 expressions -> a constant)
and taking the paired p50 difference to the unstubbed call, over many short interleaved rounds; unlike
cProfile it does not inflate Python function calls, but parts interact (fewer allocations, smaller
events), so the rows do not add up exactly. The absolute numbers move with the machine's other load;
compare variants within one run.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wrapt
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)

from auditrail import runtime, semconv
from auditrail.config import parse_config
from auditrail.instrumentor import AuditInstrumentor

TARGET_ADDED_US = 15.0
# The issue set 15 us on a machine where this baseline (emit->Batch) measured 24.5 us: the same target
# as a share of the baseline measured in this run, for machines of another speed.
REFERENCE_BASELINE_US = 24.5
APP_MODULE = "auditrail_bench_app.prompts"

# One class body, written three times into the app module: identical code for every variant.
_CLASS_TEMPLATE = '''
class {name}:
    """In-memory prompt store: tenant -> prompt text, with a version counter."""

    def __init__(self):
        self._prompts = {{}}
        self._versions = {{}}

    def get(self, tenant_id):
        return self._prompts.get(tenant_id)

    def update(self, tenant_id, new_text, editor, reason):
        self._prompts[tenant_id] = new_text
        version = self._versions.get(tenant_id, 0) + 1
        self._versions[tenant_id] = version
        return version
'''
_CLASSES = ("PromptStore", "PassthroughPromptStore", "AuditedPromptStore")

# DESIGN.md's prompt.update example (risk defaults to high for prompt.update); delivery.py reuses it.
EVENTS_YAML = f"""\
events:
  - target: {APP_MODULE}:AuditedPromptStore.update
    event: prompt.update
    tenant: tenant_id
    actor: editor
    reason: reason
    before: {{prompt_hash: sha256(self.get(tenant_id))}}
    after: {{prompt_hash: sha256(new_text)}}
"""
AUDIT_YAML = "service_name: overhead-bench\ndelivery: {mode: best_effort}\n" + EVENTS_YAML


class DiscardExporter(LogRecordExporter):
    """Accepts and drops every record; counts them so we can prove the events were produced."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        self.count += len(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


# --- the timed loop, generated per variant so the measured statement is inlined (like timeit) -------------

_LOOP = """
def loop(n, args, out, pc, {params}):
    mask = len(args) - 1
    for i in range(n):
        t, x, e, r = args[i & mask]
        t0 = pc()
{body}
        t1 = pc()
        out[i] = t1 - t0
"""


def make_loop(body: str, names: dict[str, Any]) -> Callable[..., None]:
    """A loop timing `body` per iteration; `names` become fast locals (default arguments)."""
    params = ", ".join(f"{k}={k}" for k in names) or "_unused=None"
    src = _LOOP.format(params=params, body=textwrap.indent(textwrap.dedent(body).strip(), " " * 8))
    ns = dict(names)
    exec(compile(src, "<bench loop>", "exec"), ns)  # noqa: S102 - our own template
    return ns["loop"]


@dataclass
class Variant:
    key: str
    label: str
    loop: Callable[..., None]
    settle: Callable[[], None] = lambda: None
    prepare: Callable[[], None] = lambda: None  # run untimed before each timed loop
    reference: bool = False  # shown for comparison only
    p50: list[float] = field(default_factory=list)  # per round, ns, timer overhead subtracted
    p99: list[float] = field(default_factory=list)
    calls: int = 0


# --- building the variants -----------------------------------------------------------------------------


def write_app(root: Path) -> None:
    """The app's module, as a real package on sys.path."""
    pkg = root / APP_MODULE.split(".")[0]
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    source = '"""A tiny app module for the auditrail overhead benchmark."""\n'
    source += "".join(_CLASS_TEMPLATE.format(name=name) for name in _CLASSES)
    (pkg / "prompts.py").write_text(source)
    sys.path.insert(0, str(root))


def make_args(count: int = 256) -> list[tuple[str, str, str, str]]:
    """Realistic, varying arguments (count is a power of two: the loop indexes with a mask)."""
    out = []
    for i in range(count):
        tenant = f"tenant-{i % 16:03d}"
        text = (f"You are the support assistant of tenant {tenant}. Answer politely, cite the knowledge base, "
                f"never reveal internal notes. Revision {i}. ") * 3
        out.append((tenant, text, f"editor{i % 7}@example.com", f"SUP-{1000 + i}: tone adjustment"))
    return out


def _emit_body(emit_name: str) -> str:
    return f"""
        store.update(t, x, e, r)
        {emit_name}(
            timestamp=time_ns(),
            severity_number=WARN,
            severity_text="WARN",
            event_name="prompt.update",
            attributes={{
                EVENT_ID: t,
                TENANT: t,
                ACTOR: e,
                ACTOR_TYPE: "user",
                REASON: r,
                PAYLOAD: PAYLOAD_TEXT,
                OUTCOME: "success",
                RISK: "high",
            }},
        )
    """


def _emit_names(store: Any, emit: Callable[..., None]) -> dict[str, Any]:
    return {
        "store": store, "emit": emit, "time_ns": time.time_ns, "WARN": SeverityNumber.WARN,
        "EVENT_ID": semconv.EVENT_ID, "TENANT": semconv.TENANT, "ACTOR": semconv.ACTOR,
        "ACTOR_TYPE": semconv.ACTOR_TYPE, "REASON": semconv.REASON, "PAYLOAD": semconv.PAYLOAD,
        "OUTCOME": semconv.OUTCOME, "RISK": semconv.RISK,
        "PAYLOAD_TEXT": '{"before":{"prompt_hash":"3f1c"},"after":{"prompt_hash":"9ab2"}}',
    }


class Setup:
    """Everything the variants need, and its teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        write_app(tmp / "app")

        # (3) zero-code auditing, started the way auditrail-instrument does: before the app is imported.
        self.audit_exporter = DiscardExporter()
        self.instrumentor = AuditInstrumentor()
        self.instrumentor.instrument(config=parse_config(AUDIT_YAML, filename="<bench audit.yaml>"),
                                     exporter=self.audit_exporter)
        self.recorder = runtime.recorder
        if self.recorder is None:
            raise SystemExit("auditrail did not start (no active recorder)")
        self.app = importlib.import_module(APP_MODULE)
        if not isinstance(self.app.__dict__["AuditedPromptStore"].__dict__["update"], wrapt.FunctionWrapper):
            raise SystemExit("AuditedPromptStore.update was not wrapped by auditrail")

        # (2) the do-nothing wrapt wrapper.
        def passthrough(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            return wrapped(*args, **kwargs)

        wrapt.wrap_function_wrapper(self.app, "PassthroughPromptStore.update", passthrough)

        # (4) the hand-written baseline, (5) its synchronous cousin: SDK providers of their own.
        self.batch_exporter, self.simple_exporter = DiscardExporter(), DiscardExporter()
        self.batch_provider = LoggerProvider(shutdown_on_exit=False)
        self.batch_provider.add_log_record_processor(BatchLogRecordProcessor(self.batch_exporter))
        self.simple_provider = LoggerProvider(shutdown_on_exit=False)
        self.simple_provider.add_log_record_processor(SimpleLogRecordProcessor(self.simple_exporter))

        # (5) stdlib logging to a file.
        self.log_path = tmp / "audit.log"
        self.file_handler = logging.FileHandler(self.log_path, encoding="utf-8")
        self.file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.file_logger = logging.getLogger("auditrail_bench.file")
        self.file_logger.handlers[:] = [self.file_handler]
        self.file_logger.setLevel(logging.INFO)
        self.file_logger.propagate = False

    def variants(self) -> list[Variant]:
        app = self.app
        batch_logger = self.batch_provider.get_logger("bench.audit")
        simple_logger = self.simple_provider.get_logger("bench.audit")
        provider = self.recorder.provider

        def flush_audit() -> None:
            provider.max_batch, provider.schedule_delay = 512, 0.2  # (undo park_drain)
            if not provider.force_flush(60_000):
                raise SystemExit("auditrail did not drain its spool within 60 s")

        def park_drain() -> None:
            # The hot path alone: the drain worker waits until the round is over (flush_audit), so the
            # call's own cost is separated from the drain's competition for the GIL in this tight loop.
            provider.max_batch, provider.schedule_delay = 10**9, 3600.0
            with provider._wake:
                provider._wake.notify()  # re-enter its wait with the new delay

        return [
            Variant("timer", "(timer overhead)", make_loop("pass", {})),
            Variant("plain", "plain call", make_loop("store.update(t, x, e, r)", {"store": app.PromptStore()})),
            Variant("wrapt", "wrapt pass-through",
                    make_loop("store.update(t, x, e, r)", {"store": app.PassthroughPromptStore()}), reference=True),
            Variant("audited", "audited (zero-code)",
                    make_loop("store.update(t, x, e, r)", {"store": app.AuditedPromptStore()}), settle=flush_audit),
            Variant("audited_deferred", "audited, drain after the round",
                    make_loop("store.update(t, x, e, r)", {"store": app.AuditedPromptStore()}),
                    settle=flush_audit, prepare=park_drain, reference=True),
            Variant("emit_batch", "call + emit->Batch->discard",
                    make_loop(_emit_body("emit"), _emit_names(app.PromptStore(), batch_logger.emit)),
                    settle=lambda: self.batch_provider.force_flush()),
            Variant("emit_simple", "call + emit->Simple->discard",
                    make_loop(_emit_body("emit"), _emit_names(app.PromptStore(), simple_logger.emit)), reference=True),
            Variant("stdlib_file", "call + stdlib logging->file",
                    make_loop("store.update(t, x, e, r)\ninfo('prompt.update tenant=%s actor=%s reason=%s outcome=%s', "
                              "t, e, r, 'success')",
                              {"store": app.PromptStore(), "info": self.file_logger.info}),
                    settle=self.file_handler.flush, reference=True),
        ]

    def close(self) -> None:
        self.instrumentor.uninstrument()
        self.batch_provider.shutdown()
        self.simple_provider.shutdown()
        self.file_logger.removeHandler(self.file_handler)
        self.file_handler.close()


# --- measuring -----------------------------------------------------------------------------------------


def percentile(sorted_ns: list[int], q: float) -> int:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * (len(sorted_ns) - 1) + 0.5))]


def measure(variants: list[Variant], args: list[tuple[str, str, str, str]], iterations: int, rounds: int,
            warmup: int, keep_gc: bool) -> list[int]:
    """Fill each variant's per-round p50/p99; returns the timer overhead (ns) of each round."""
    pc = time.perf_counter_ns
    timers = []
    scratch = [0] * max(iterations, warmup)
    for v in variants:  # warm-up: caches, first-call paths, the drain thread's first batches
        v.prepare()
        v.loop(warmup, args, scratch, pc)
        v.calls += warmup
        v.settle()
    samples = [0] * iterations
    for rnd in range(rounds):
        shift = rnd % len(variants)
        order = variants[shift:] + variants[:shift]
        raw: dict[str, tuple[int, int]] = {}
        for v in order:
            v.prepare()
            gc.collect()
            if not keep_gc:
                gc.disable()
            try:
                v.loop(iterations, args, samples, pc)
            finally:
                gc.enable()
            v.calls += iterations
            v.settle()
            ordered = sorted(samples)
            raw[v.key] = (percentile(ordered, 0.50), percentile(ordered, 0.99))
        timer = raw["timer"][0]
        timers.append(timer)
        for v in variants:
            v.p50.append(raw[v.key][0] - timer)
            v.p99.append(raw[v.key][1] - timer)
        print(f"  round {rnd + 1}/{rounds}: " + "  ".join(
            f"{v.key}={(raw[v.key][0] - timer) / 1000:.2f}" for v in variants if v.key != "timer") + "  (p50 us)",
            flush=True)
    return timers


def summarize(variants: list[Variant]) -> dict[str, dict[str, float]]:
    plain = next(v for v in variants if v.key == "plain")
    out = {}
    for v in variants:
        out[v.key] = {
            "label": v.label,
            "p50_us": statistics.median(v.p50) / 1000,
            "p99_us": statistics.median(v.p99) / 1000,
            "added_p50_us": statistics.median(a - b for a, b in zip(v.p50, plain.p50, strict=True)) / 1000,
            "added_p99_us": statistics.median(a - b for a, b in zip(v.p99, plain.p99, strict=True)) / 1000,
            "p50_rounds_us": [x / 1000 for x in v.p50],
            "p99_rounds_us": [x / 1000 for x in v.p99],
            "calls": v.calls,
            "reference": v.reference,
        }
    return out


def print_table(results: dict[str, dict[str, float]]) -> None:
    head = f"{'variant':<36} {'p50 us':>9} {'p99 us':>9} {'added p50 us':>13} {'added p99 us':>13}"
    print(head)
    print("-" * len(head))
    for key, r in results.items():
        if key == "timer":
            continue
        added50 = "-" if key == "plain" else f"{r['added_p50_us']:.2f}"
        added99 = "-" if key == "plain" else f"{r['added_p99_us']:.2f}"
        label = r["label"] + ("  (ref)" if r["reference"] else "")
        print(f"{label:<36} {r['p50_us']:>9.2f} {r['p99_us']:>9.2f} {added50:>13} {added99:>13}")


# --- breakdown (optional): what each part of the audited call costs, by stubbing it out -----------------


class _Swap:
    """Temporarily replace obj.name (restores exactly, including 'was not an instance attribute')."""

    def __init__(self, obj: Any, name: str, value: Any) -> None:
        self.obj, self.name, self.value = obj, name, value
        self.had_own = isinstance(getattr(obj, "__dict__", None), dict) and name in obj.__dict__
        self.old = getattr(obj, name)

    def enter(self) -> None:
        setattr(self.obj, self.name, self.value)

    def exit(self) -> None:
        if self.had_own or not isinstance(getattr(self.obj, "__dict__", None), dict):
            setattr(self.obj, self.name, self.old)
        else:
            delattr(self.obj, self.name)


class _SwapItem(_Swap):
    """Temporarily replace mapping[key] (e.g. a name in the generated call function's globals)."""

    def __init__(self, mapping: dict[str, Any], key: str, value: Any) -> None:
        self.obj, self.name, self.value, self.old = mapping, key, value, mapping[key]

    def enter(self) -> None:
        self.obj[self.name] = self.value

    def exit(self) -> None:
        self.obj[self.name] = self.old


def breakdown(setup: Setup, args: list[tuple[str, str, str, str]], rounds: int,
              block: int = 2_000) -> tuple[list[dict[str, Any]], int]:
    """Cost of each part = p50(audited) - p50(audited with that part stubbed), paired per round, median.

    Uses internals (Recorder and provider attributes, the generated call function's globals); a part whose
    internals changed is skipped rather than failing the benchmark. Returns the rows and the number of
    calls that still produced an event (all but those with auditing off, or emit/record/queue stubbed).
    """
    rec, provider = setup.recorder, setup.recorder.provider
    wrapper = getattr(setup.app.AuditedPromptStore.__dict__["update"], "_self_wrapper", None)
    generated = wrapper._gen.call.__globals__  # the names the generated call function reads
    # key -> (stubs, still emits an event)
    stubs: dict[str, tuple[Callable[[], list[_Swap]], bool]] = {
        "full": (lambda: [], True),
        "off": (lambda: [_Swap(runtime, "recorder", None)], False),
        "no_emit": (lambda: [_SwapItem(generated, "__emit", lambda *a: None)], False),
        "no_record": (lambda: [_Swap(rec, "record_positional", lambda *a: None)], False),
        "no_sha256": (lambda: [_SwapItem(generated, "sha256", lambda value: "0" * 64)], True),
        "no_queue": (lambda: [_Swap(provider, "submit_deferred", lambda build, fields: None)], False),
    }
    # row label -> (minuend, subtrahend): the part's cost is p50[minuend] - p50[subtrahend]
    rows_spec = [
        ("whole audited call (added over plain)", "full", "plain"),
        ("  wrapt dispatch + AuditWrapper, auditing off", "off", "plain"),
        ("  generated call: bind, before/after, 5 fields", "no_emit", "off"),
        ("    of which the two sha256() of prompt texts", "full", "no_sha256"),
        ("  emitter: payload hygiene (redaction, plain check)", "no_record", "no_emit"),
        ("  Recorder: context, impersonation, trace, queue", "full", "no_record"),
        ("    of which the queue to the drain", "full", "no_queue"),
    ]
    jobs: list[tuple[str, Callable[..., None], list[_Swap], bool]] = [
        ("plain", make_loop("store.update(t, x, e, r)", {"store": setup.app.PromptStore()}), [], False)]
    audited_loop = make_loop("store.update(t, x, e, r)", {"store": setup.app.AuditedPromptStore()})
    for key, (make, emits) in stubs.items():
        try:
            jobs.append((key, audited_loop, make(), emits))
        except Exception as exc:  # noqa: BLE001 - internals moved: skip the rows that need this stub
            print(f"  (breakdown: cannot stub {key!r}: {type(exc).__name__}: {exc}; skipped)")
    pc, out = time.perf_counter_ns, [0] * block
    p50: dict[str, list[int]] = {key: [] for key, *_ in jobs}
    emitted = 0

    def run(loop: Callable[..., None], swaps: list[_Swap]) -> int:
        for swap in swaps:
            swap.enter()
        gc.collect()
        gc.disable()
        try:
            loop(block, args, out, pc)
        finally:
            gc.enable()
            for swap in reversed(swaps):
                swap.exit()
        provider.force_flush(60_000)
        return sorted(out)[block // 2]

    for rnd in range(rounds + 1):  # round 0 is a warm-up
        shift = rnd % len(jobs)
        for key, loop, swaps, emits in jobs[shift:] + jobs[:shift]:
            value = run(loop, swaps)
            emitted += block if emits else 0
            if rnd:
                p50[key].append(value)
    rows = []
    for label, a, b in rows_spec:
        if a in p50 and b in p50:
            diffs = [x - y for x, y in zip(p50[a], p50[b], strict=True)]
            rows.append({"part": label, "us": statistics.median(diffs) / 1000, "iqr_us": _iqr(diffs)})
    return rows, emitted


def _iqr(values: list[int]) -> tuple[float, float]:
    ordered = sorted(values)
    q = len(ordered) // 4
    return ordered[q] / 1000, ordered[-q - 1] / 1000


def print_breakdown(rows: list[dict[str, Any]], rounds: int, block: int = 2_000) -> None:
    print(f"\nbreakdown of the audited call (p50 cost of each part = audited minus audited-with-it-stubbed, "
          f"median of {rounds} paired rounds x {block} calls; IQR shows the noise):")
    for row in rows:
        lo, hi = row["iqr_us"]
        print(f"  {row['part']:<52} {row['us']:7.2f} us   [IQR {lo:6.2f} .. {hi:6.2f}]")


# --- profiling (optional) ------------------------------------------------------------------------------


def profile_audited(setup: Setup, args: list[tuple[str, str, str, str]], calls: int) -> tuple[int, str]:
    """cProfile `calls` audited calls; returns the count and the report (cProfile inflates every Python
    function call, so read the proportions, not the absolute times; --breakdown measures without it)."""
    import cProfile
    import io
    import pstats

    store = setup.app.AuditedPromptStore()
    prof = cProfile.Profile()
    mask = len(args) - 1
    done = 0
    provider = setup.recorder.provider
    while done < calls:  # chunks, so the spool is drained between them as in the timed runs
        chunk = min(10_000, calls - done)
        prof.enable()
        for i in range(chunk):
            t, x, e, r = args[(done + i) & mask]
            store.update(t, x, e, r)
        prof.disable()
        provider.force_flush(60_000)
        done += chunk
    text = io.StringIO()
    text.write(f"\ncProfile of {calls} audited calls (main thread only; top 25 by own time):\n")
    pstats.Stats(prof, stream=text).strip_dirs().sort_stats("tottime").print_stats(25)
    return calls, text.getvalue()


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20_000, help="timed calls per variant per round (20000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--warmup", type=int, default=2_000, help="untimed calls per variant first (2000)")
    parser.add_argument("--gc", action="store_true", help="keep the garbage collector enabled while timing")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="also write the results as JSON to PATH (no PATH: to stdout, after the table)")
    parser.add_argument("--profile", type=int, nargs="?", const=20_000, default=0, metavar="CALLS",
                        help="afterwards, cProfile CALLS audited calls (default 20000) and print the top functions")
    parser.add_argument("--breakdown", type=int, nargs="?", const=30, default=0, metavar="ROUNDS",
                        help="afterwards, cost each part of the audited call by stubbing it out (ROUNDS=30)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if a target check fails")
    opts = parser.parse_args(argv)
    if opts.iterations < 100 or opts.rounds < 1:
        parser.error("need --iterations >= 100 and --rounds >= 1")

    print(f"auditrail overhead benchmark: Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{opts.rounds} interleaved rounds x {opts.iterations} timed calls per variant, {opts.warmup} warm-up calls; "
          f"gc {'ENABLED' if opts.gc else 'disabled'} while timing; timer overhead subtracted")

    loads = [_loadavg()]
    args = make_args()
    with tempfile.TemporaryDirectory(prefix="auditrail-bench-") as tmp:
        setup = Setup(Path(tmp))
        try:
            variants = setup.variants()
            timers = measure(variants, args, opts.iterations, opts.rounds, opts.warmup, opts.gc)
            rows, emitted = breakdown(setup, args, opts.breakdown) if opts.breakdown else ([], 0)
            profiled, profile_text = profile_audited(setup, args, opts.profile) if opts.profile else (0, "")
            provider = setup.recorder.provider
            provider.force_flush(60_000)
            # Signed checkpoints (every 1000 events and each minute) are exported beside the events.
            checkpoints = provider.checkpoints
            exported = setup.audit_exporter.count - checkpoints
            dropped = getattr(provider.spool, "dropped", 0)
            # Every call of the audited method that should have produced an event (timed, breakdown, profile).
            audited_calls = sum(v.calls for v in variants if v.key.startswith("audited")) + emitted + profiled
            counters = setup.recorder.counters
            errors = counters.capture_errors + counters.extractor_errors
        finally:
            setup.close()
        results = summarize(variants)
        loads.append(_loadavg())

    print()
    print_table(results)
    print(f"(p50/p99: median over {opts.rounds} rounds of per-round percentiles; added: median of per-round "
          f"differences to the plain call; (ref) = reference only; timer overhead of "
          f"{statistics.median(timers) / 1000:.3f} us per call subtracted)")
    if loads[0] is not None:
        print(f"(1-min load average before/after: {loads[0]:.2f} / {loads[1]:.2f} on {os.cpu_count()} CPUs: other work "
              f"on the machine slows every variant, often unevenly; compare variants within one run)")

    if rows:
        print_breakdown(rows, opts.breakdown)
    if profile_text:
        print(profile_text.rstrip())
    expected = audited_calls
    print(f"\naudited events exported: {exported} for {expected} audited calls, plus {checkpoints} checkpoints "
          f"(spool dropped {dropped}, capture/extractor errors {errors}); "
          f"emit->Batch exported {setup.batch_exporter.count}, emit->Simple exported {setup.simple_exporter.count}")
    if exported != expected or dropped or errors:
        print("ERROR: the audited calls did not all produce exactly one exported event", file=sys.stderr)
        return 2

    audited = results["audited"]["added_p50_us"]
    baseline = results["emit_batch"]["added_p50_us"]
    checks = [
        (f"audited p50 added latency <= baseline (emit->Batch) added latency: {audited:.2f} us <= {baseline:.2f} us",
         audited <= baseline),
        (f"audited p50 added latency <= {TARGET_ADDED_US:g} us: {audited:.2f} us <= {TARGET_ADDED_US:g} us",
         audited <= TARGET_ADDED_US),
        (f"the same, scaled to this run's baseline: audited/baseline {audited / baseline:.2f} <= "
         f"{TARGET_ADDED_US:g}/{REFERENCE_BASELINE_US:g} = {TARGET_ADDED_US / REFERENCE_BASELINE_US:.2f}",
         audited / baseline <= TARGET_ADDED_US / REFERENCE_BASELINE_US),
    ]
    print("\ntarget checks:")
    for text, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {text}")

    if opts.json:
        doc = {
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}",
            "cpus": os.cpu_count(),
            "iterations": opts.iterations,
            "rounds": opts.rounds,
            "warmup": opts.warmup,
            "gc_enabled_while_timing": opts.gc,
            "results": {k: v for k, v in results.items() if k != "timer"},
            "timer_overhead_subtracted_us": statistics.median(timers) / 1000,
            "audited_events_exported": exported,
            "audited_calls": expected,
            "breakdown": rows,
            "loadavg_before_after": loads,
            "checks": [{"check": text, "pass": ok} for text, ok in checks],
        }
        text = json.dumps(doc, indent=2)
        if opts.json == "-":
            print(text)
        else:
            Path(opts.json).write_text(text + "\n")
            print(f"\nresults written to {opts.json}")
    return 1 if opts.strict and not all(ok for _, ok in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
