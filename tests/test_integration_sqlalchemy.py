"""The SQLAlchemy integration on the real library (issue 16): model history from flushes and bulk statements.

Mapped classes in a module written to tmp_path (no auditrail import), a file SQLite database, plain
`Session`s; audit.yaml has no `events:`. Events wait for the commit: a rollback records nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("sqlalchemy", reason="SQLAlchemy is in the dev extras: pip install -e '.[dev]'")

MODELS = """
from sqlalchemy import ForeignKey, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Policy(Base):
    __tablename__ = "policy"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(40))
    monthly_limit: Mapped[int] = mapped_column(default=0)

    def __str__(self):
        return self.name


class Account(Base):
    __tablename__ = "account"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(80))
    password: Mapped[str] = mapped_column(String(80))


class Visit(Base):  # not listed: never recorded
    __tablename__ = "visit"
    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(80))


def engine(path):
    e = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(e)
    return e
"""

YAML = """
delivery: {mode: best_effort}
integrations:
  sqlalchemy:
    models: {Policy: policy, shop.Account: null}
    tenant: obj.tenant_id
    bulk_max_rows: 3
"""


@pytest.fixture
def db(audit: Any, tmp_path: Any) -> Any:
    audit.module("shop", MODELS)
    audit.instrument(YAML)
    import shop

    shop.bind = shop.engine(tmp_path / "shop.db")
    return shop


def seed(db: Any, *limits: int) -> None:
    from sqlalchemy.orm import Session

    with Session(db.bind) as session:
        session.add_all([db.Policy(tenant_id="acme", name=f"p{i}", monthly_limit=n) for i, n in enumerate(limits)])
        session.commit()


def test_create_update_delete_with_before_after_of_the_changed_columns(audit: Any, db: Any) -> None:
    from sqlalchemy.orm import Session

    with Session(db.bind) as session:
        policy = db.Policy(tenant_id="acme", name="chat", monthly_limit=100)
        session.add_all([policy, db.Visit(path="/")])
        session.commit()
        policy.monthly_limit = 250  # expired by the commit: SQLAlchemy kept no old value; read before the flush
        policy.name = "chat"  # set to what it was: not a change
        session.commit()
        policy.name = "chat-pro"  # loaded: the history has the old value
        session.commit()
        session.delete(policy)
        session.commit()

    create = audit.one("policy.create")
    assert create["payload"] == {"model": "policy", "pk": "1", "object": "chat",
                                 "after": {"id": 1, "tenant_id": "acme", "name": "chat", "monthly_limit": 100}}
    assert create["attrs"]["audit.tenant_id"] == "acme"
    limit, name = audit.events("policy.update")
    assert limit["payload"]["before"] == {"monthly_limit": 100} and limit["payload"]["after"] == {"monthly_limit": 250}
    assert limit["payload"]["changed"] == ["monthly_limit"]
    assert name["payload"]["before"] == {"name": "chat"} and name["payload"]["after"] == {"name": "chat-pro"}
    delete = audit.one("policy.delete")
    assert delete["payload"]["pk"] == "1"
    assert delete["payload"]["before"] == {"id": 1, "tenant_id": "acme", "name": "chat-pro", "monthly_limit": 250}
    assert all(not e["event"].startswith("visit") for e in audit.events())


def test_a_rollback_records_nothing_and_a_rolled_back_savepoint_only_its_own(audit: Any, db: Any) -> None:
    from sqlalchemy.orm import Session

    with Session(db.bind) as session:
        session.add(db.Policy(tenant_id="acme", name="gone"))
        session.flush()  # written, then undone
        session.rollback()
        session.add(db.Policy(tenant_id="acme", name="kept"))
        with session.begin_nested():
            session.add(db.Policy(tenant_id="acme", name="in-savepoint"))
        savepoint = session.begin_nested()
        session.add(db.Policy(tenant_id="acme", name="rolled-back"))
        session.flush()
        savepoint.rollback()
        session.commit()
    with Session(db.bind) as session:
        session.add(db.Policy(tenant_id="acme", name="closed"))
        session.flush()  # never committed: close() rolls back
    names = [e["payload"]["after"]["name"] for e in audit.events("policy.create")]
    assert names == ["kept", "in-savepoint"]


def test_bulk_update_and_delete_statements_row_by_row_and_summarised_above_bulk_max_rows(audit: Any, db: Any) -> None:
    from sqlalchemy import delete, update
    from sqlalchemy.orm import Session

    seed(db, 10, 20, 30, 40, 50)
    with Session(db.bind) as session:
        session.execute(update(db.Policy).where(db.Policy.monthly_limit < 25).values(monthly_limit=0))
        session.execute(update(db.Policy).values(tenant_id="globex"))  # 5 rows > bulk_max_rows 3
        session.execute(delete(db.Policy).where(db.Policy.monthly_limit == 50))
        session.execute(update(db.Visit).values(path="/x"))  # not tracked
        session.commit()
        session.execute(update(db.Policy).values(monthly_limit=1))
        session.rollback()  # undone: not recorded

    rows, summary = audit.events("policy.update")[:2], audit.events("policy.update")[2:]
    assert [(e["payload"]["pk"], e["payload"]["before"], e["payload"]["after"]) for e in rows] == [
        ("1", {"monthly_limit": 10}, {"monthly_limit": 0}), ("2", {"monthly_limit": 20}, {"monthly_limit": 0})]
    assert rows[0]["payload"]["bulk"] is True
    assert [e["payload"] for e in summary] == [{"model": "policy", "bulk": True, "rows": 5, "truncated": True}]
    delete_event = audit.one("policy.delete")
    assert delete_event["payload"]["pk"] == "5" and delete_event["payload"]["before"]["monthly_limit"] == 50


def test_no_password_in_any_event(audit: Any, db: Any) -> None:
    from sqlalchemy.orm import Session

    with Session(db.bind) as session:
        account = db.Account(email="bob@acme.io", password="pbkdf2$s3cret-hash")
        session.add(account)
        session.commit()
        account.password = "pbkdf2$n3w-hash"
        session.commit()
    update_event = audit.one("account.update")
    assert update_event["payload"]["changed"] == ["password"]
    text = str([e["attrs"] for e in audit.events()])
    assert "s3cret-hash" not in text and "n3w-hash" not in text


def test_without_models_nothing_listens(audit: Any) -> None:
    from sqlalchemy.orm import Session

    audit.instrument("delivery: {mode: best_effort}\n")
    assert not Session().dispatch.do_orm_execute and not Session().dispatch.after_commit


def test_only_listed_classes_listen_and_uninstrument_removes_every_listener(audit: Any, tmp_path: Any) -> None:
    from sqlalchemy import inspect
    from sqlalchemy.orm import Session, configure_mappers

    audit.module("shop", MODELS)
    import shop  # imported and configured before auditing starts, as an app may be

    configure_mappers()
    audit.instrument(YAML)
    policy, visit = inspect(shop.Policy), inspect(shop.Visit)
    assert len(policy.dispatch.before_update) == 1 and len(policy.dispatch.after_insert) == 1
    assert not visit.dispatch.before_update and not visit.dispatch.after_insert  # a flush of Visit runs nothing
    with Session(shop.engine(tmp_path / "early.db")) as session:
        session.add(shop.Policy(tenant_id="acme", name="early"))
        session.commit()
    assert audit.one("policy.create")["payload"]["after"]["name"] == "early"
    audit.stop()
    assert not policy.dispatch.before_update and not Session().dispatch.do_orm_execute


def test_bulk_update_by_primary_key_is_one_summary_event_naming_the_columns(audit: Any, db: Any) -> None:
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    seed(db, 10, 20)
    with Session(db.bind) as session:
        session.execute(update(db.Policy), [{"id": 1, "monthly_limit": 5}, {"id": 2, "monthly_limit": 6}])
        session.commit()
    assert audit.one("policy.update")["payload"] == {"model": "policy", "bulk": True, "rows": 2, "truncated": False,
                                                     "changed": ["monthly_limit"]}


def test_a_bulk_update_with_bound_parameters_is_read_with_them(audit: Any, db: Any) -> None:
    from sqlalchemy import bindparam, update
    from sqlalchemy.orm import Session

    seed(db, 10, 20)
    with Session(db.bind) as session:
        statement = update(db.Policy).where(db.Policy.name == bindparam("which")).values(
            monthly_limit=bindparam("limit"))
        session.execute(statement, {"which": "p1", "limit": 99})
        session.commit()
    event = audit.one("policy.update")
    assert event["payload"]["pk"] == "2" and event["payload"]["after"] == {"monthly_limit": 99}
    assert audit.counters.extractor_errors == 0
