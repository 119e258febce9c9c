"""Users and the password check behind the login form."""

from __future__ import annotations

from flask_login import UserMixin
from werkzeug.security import check_password_hash

from pricing_admin.db import connect


class User(UserMixin):
    """A signed-in person; `id` is the e-mail address, `tenant_id` the customer they work for."""

    def __init__(self, user_id: str, tenant_id: str) -> None:
        self.id = user_id
        self.tenant_id = tenant_id


def load_user(user_id: str) -> User | None:
    """Flask-Login's user loader."""
    with connect() as conn:
        row = conn.execute("SELECT id, tenant_id FROM users WHERE id = ?", (user_id,)).fetchone()
    return User(row["id"], row["tenant_id"]) if row else None


def authenticate(username: str, password: str) -> User | None:
    """The user when the password matches, else None."""
    with connect() as conn:
        row = conn.execute("SELECT * FROM users WHERE id = ?", (username,)).fetchone()
    if row is None or not check_password_hash(row["password_hash"], password):
        return None
    return User(row["id"], row["tenant_id"])
