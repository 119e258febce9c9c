"""The admin for policies, with one custom bulk action."""

from django.contrib import admin

from .models import Policy


def deactivate_policies(queryset):
    """Turn the policies off: one UPDATE for every row."""
    return queryset.update(active=False)


@admin.action(description="Deactivate the selected policies")
def deactivate(modeladmin, request, queryset):
    """A custom bulk action."""
    deactivate_policies(queryset)


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant_id", "monthly_limit", "active")
    actions = [deactivate]
