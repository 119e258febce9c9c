"""The HTTP side: a login form and the back-office pages (Flask + Flask-Login)."""

from __future__ import annotations

import os

from flask import Flask, abort, redirect, render_template_string, request, url_for
from flask_login import LoginManager, current_user, login_required, login_user, logout_user

from pricing_admin import auth
from pricing_admin.stores import plans, prompts, settings

PAGE = """<!doctype html><title>pricing-admin</title>
<p>{{ user }} ({{ tenant }}) <form method=post action="{{ url_for('logout') }}"><button>Sign out</button></form>
<h2>Plans</h2>{% for plan, cents in prices.items() %}
<form method=post action="{{ url_for('edit_plan', plan_id=plan) }}">{{ plan }}
<input name=price_cents value="{{ cents }}"> <input name=reason placeholder=reason> <button>Save</button></form>
<form method=post action="{{ url_for('delete_plan', plan_id=plan) }}"><button>Retire {{ plan }}</button></form>
{% endfor %}
<h2>Assistant prompt</h2><form method=post action="{{ url_for('edit_prompt') }}">
<textarea name=text>{{ prompt }}</textarea> <input name=reason placeholder=reason> <button>Save</button></form>
<h2>Integrations</h2><form method=post action="{{ url_for('edit_settings') }}">
<input name=webhook_url value="{{ config.get('webhook_url', '') }}">
<input name=webhook_secret type=password> <input name=openai_api_key type=password> <button>Save</button></form>
"""

LOGIN = """<!doctype html><title>Sign in</title>{% if failed %}<p>Wrong e-mail or password.</p>{% endif %}
<form method=post><input name=username> <input name=password type=password> <button>Sign in</button></form>"""


def create_app() -> Flask:
    """The application."""
    app = Flask(__name__)
    app.secret_key = os.environ.get("PRICING_SECRET_KEY", "dev-only-secret")
    login_manager = LoginManager(app)
    login_manager.login_view = "login"
    login_manager.user_loader(auth.load_user)

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "GET":
            return render_template_string(LOGIN, failed=False)
        user = auth.authenticate(request.form["username"], request.form["password"])
        if user is None:
            return render_template_string(LOGIN, failed=True), 401
        login_user(user)
        return redirect(url_for("home"))

    @app.post("/logout")
    def logout():
        logout_user()
        return redirect(url_for("login"))

    @app.get("/")
    @login_required
    def home():
        tenant = current_user.tenant_id
        return render_template_string(PAGE, user=current_user.id, tenant=tenant, prices=plans.prices(tenant),
                                      prompt=prompts.get(tenant), config=settings.load(tenant))

    @app.post("/plans/<plan_id>")
    @login_required
    def edit_plan(plan_id):
        try:
            plans.set_price(current_user.tenant_id, plan_id, int(request.form["price_cents"]),
                            request.form.get("reason", ""))
        except KeyError:
            abort(404)
        except ValueError as e:
            return str(e), 400
        return redirect(url_for("home"))

    @app.post("/plans/<plan_id>/delete")
    @login_required
    def delete_plan(plan_id):
        if not plans.delete(current_user.tenant_id, plan_id):
            abort(404)
        return redirect(url_for("home"))

    @app.post("/prompt")
    @login_required
    def edit_prompt():
        prompts.update(current_user.tenant_id, request.form["text"], request.form.get("reason", ""))
        return redirect(url_for("home"))

    @app.post("/settings")
    @login_required
    def edit_settings():
        settings.save(current_user.tenant_id, request.form.to_dict())
        return redirect(url_for("home"))

    return app
