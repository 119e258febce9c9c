"""A tenant's usage policy: the kind of row whose history an auditor asks for."""

from django.db import models


class Policy(models.Model):
    """A named limit for one tenant."""

    tenant_id = models.CharField(max_length=64)
    name = models.CharField(max_length=100)
    monthly_limit = models.PositiveIntegerField(default=1000)
    active = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.name}"
