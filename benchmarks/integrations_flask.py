"""What do the Flask, SQLAlchemy, Stripe and Scrapy integrations add to work that audits nothing?  A benchmark.

    .venv/bin/python benchmarks/integrations_flask.py               # make bench runs it after integrations.py
    .venv/bin/python benchmarks/integrations_flask.py --requests 3000 --rounds 9 [--json]

1. A Flask request that audits nothing, through Flask's own WSGI app (the test client): Flask-Login
   loads the logged-in user from the session, the view reads a Policy (an ORM SELECT: the sqlalchemy
   integration's do_orm_execute listener runs), adds a Visit (not tracked) and commits (its flush and
   commit listeners run). Both variants run under auditrail's instrumentor with the same request capture:
     baseline       integrations: flask_login, flask_admin, sqlalchemy false
     integrations   flask_login, flask_admin on; sqlalchemy: {models: [Policy]}
   Many short rounds alternate the two (re-instrumenting between rounds, outside the timing); a
   variant's p50 is the median of its per-round p50s, the added latency the median of per-round differences.
2. The integrations' own code on that request, in isolation (the request-level difference is inside this
   machine's noise): the sqlalchemy listeners such a request runs, called on its real Session and ORM
   execute state (do_orm_execute for the SELECT, after_commit and after_transaction_end with nothing
   pending; the untracked Visit's flush runs none: only listed classes' mappers listen), against an empty call.
Flask-Login runs no code on a request that records nothing (its actor is read only when an event is
recorded); Flask-Admin's wrappers run only in the admin's save, delete and action views; Stripe's only
in subscription calls and verified webhooks; Scrapy's once per crawl. Target: under 2 us added p50.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from integrations import alternate, instrument, parse_args, print_request_p50s  # noqa: E402 - the Django benchmark's helpers

TARGET_US = 2.0
BASE = "delivery: {mode: best_effort}\n"
OFF = BASE + "integrations: {flask_login: false, flask_admin: false, sqlalchemy: false}\n"
ON = BASE + "integrations:\n  sqlalchemy: {models: [Policy]}\n"

APP = '''
from flask import Flask
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from flask_login import LoginManager, UserMixin, login_user
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__)
app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI="sqlite://")
db = SQLAlchemy(app)
login = LoginManager(app)


class User(UserMixin, db.Model):
    id = db.Column(db.Integer, primary_key=True)


class Policy(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(40))


class Visit(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    policy = db.Column(db.String(40))


@login.user_loader
def load(user_id):
    return db.session.get(User, int(user_id))


@app.post("/login")
def do_login():
    login_user(db.session.get(User, 1))
    return "ok"


@app.get("/bench")
def bench():
    policy = db.session.execute(db.select(Policy).where(Policy.id == 1)).scalar_one()
    db.session.add(Visit(policy=policy.name))
    db.session.commit()
    return "ok"


Admin(app).add_view(ModelView(Policy, db))
with app.app_context():
    db.create_all()
    db.session.add_all([User(), Policy(name="chat")])
    db.session.commit()
'''


def load_app() -> Any:
    """The app as a real module (Flask-SQLAlchemy wants one), and a logged-in test client."""
    module = types.ModuleType("flask_bench_app")
    module.__file__ = __file__
    sys.modules[module.__name__] = module
    exec(compile(APP, "flask_bench_app", "exec"), module.__dict__)  # noqa: S102 - this file's own app
    client = module.app.test_client()
    assert client.post("/login").status_code == 200
    return module, client


def timed(client: Any, count: int) -> list[int]:
    """Per-request latencies (ns) of `count` GET /bench through Flask's WSGI app."""
    out = []
    pc = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for _ in range(count):
            start = pc()
            client.get("/bench")
            out.append(pc() - start)
    finally:
        gc.enable()
    return out


def component_cost(module: Any, rounds: int = 15, calls: int = 20_000) -> dict[str, float]:
    """The sqlalchemy listeners a non-auditing request runs, on that request's real objects, ns per request."""
    from auditrail import runtime
    from auditrail.integrations.sqlalchemy import SQLAlchemyIntegration
    from sqlalchemy import event, select
    from sqlalchemy.orm import Session

    integration = SQLAlchemyIntegration({"models": {"Policy": None}})
    states: list[Any] = []
    with module.app.app_context():
        engine = module.db.engine
    session = Session(engine)

    def keep(state: Any) -> None:
        states.append(state)

    event.listen(session, "do_orm_execute", keep)
    session.execute(select(module.Policy).where(module.Policy.id == 1)).scalar_one()
    event.remove(session, "do_orm_execute", keep)
    state = states[0]
    transaction = session.get_transaction()
    assert runtime.recorder is not None  # instrumented: the listeners do their real work

    def ours() -> None:
        # The Visit's flush runs none of the integration's code: only tracked mappers listen to rows.
        integration._orm_execute(state)
        integration._after_commit(session)
        integration._after_transaction_end(session, transaction)

    def empty() -> None:
        pass

    pc = time.perf_counter_ns
    samples: dict[str, list[float]] = {"empty": [], "listeners": []}
    for _ in range(rounds):
        for name, fn in (("empty", empty), ("listeners", ours)):
            start = pc()
            for _ in range(calls):
                fn()
            samples[name].append((pc() - start) / calls)
    session.close()
    diffs = [o - e for o, e in zip(samples["listeners"], samples["empty"], strict=True)]
    return {"added_ns": statistics.median(diffs)}


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print p50 per variant and the added p50; non-zero exit with --strict over target."""
    args = parse_args(argv, __doc__, requests=300, rounds=30)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        instrument(OFF, tmp)  # the request capture first, as under auditrail-instrument
        module, client = load_app()
        timed(client, args.requests)  # warm-up

        def measure() -> float:
            timed(client, args.requests // 10)
            return statistics.median(timed(client, args.requests)) / 1000

        p50s = alternate(args.rounds, OFF, ON, tmp, measure)
        instrument(ON, tmp)
        component = component_cost(module)
    added = [on - off for on, off in zip(p50s["integrations"], p50s["baseline"], strict=True)]
    result = {"baseline_p50_us": statistics.median(p50s["baseline"]),
              "integrations_p50_us": statistics.median(p50s["integrations"]),
              "added_p50_us": statistics.median(added), "component_added_ns": component["added_ns"],
              "rounds": args.rounds, "requests": args.requests, "load_avg_1m": os.getloadavg()[0]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_request_p50s("Flask request that audits nothing", result, added, "")
        print("The integrations' own code on that request, in isolation (sqlalchemy's do_orm_execute, "
              "after_commit, after_transaction_end on its real objects):")
        print(f"  added {component['added_ns']:.0f} ns per request")
        verdict = "OK" if component["added_ns"] / 1000 < TARGET_US else "OVER"
        print(f"target: under {TARGET_US:g} us added p50 per request: {verdict} ({component['added_ns'] / 1000:.2f} us)")
    return 1 if args.strict and component["added_ns"] / 1000 >= TARGET_US else 0


if __name__ == "__main__":
    sys.exit(main())
