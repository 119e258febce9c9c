"""The prompts app."""

from django.apps import AppConfig


class PromptsConfig(AppConfig):
    """The assistant prompts each customer (tenant) runs with."""

    name = "prompts"
