"""pricing-admin: a small Flask back office (Flask-Login) for plan prices, the assistant prompt and settings."""

from pricing_admin.app import create_app

__all__ = ["create_app"]
