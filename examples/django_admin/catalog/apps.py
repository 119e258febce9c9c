"""The catalog app."""

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """Per-tenant usage policies."""

    name = "catalog"
