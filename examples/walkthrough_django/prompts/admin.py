"""The prompts in the Django admin."""

from django.contrib import admin

from prompts.models import Prompt


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    """List, edit and delete prompts; filter by tenant."""

    list_display = ("name", "tenant", "max_tokens")
    list_filter = ("tenant",)
