"""The admin for policies, with one custom bulk action."""

from django.contrib import admin

from .models import Policy


@admin.action(description="Deactivate the selected policies")
def deactivate(modeladmin, request, queryset):
    """A custom bulk action: one UPDATE for every selected row."""
    queryset.update(active=False)


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant_id", "monthly_limit", "active")
    actions = [deactivate]
