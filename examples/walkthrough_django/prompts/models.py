"""An assistant prompt per customer: the text and limits its answers are generated with."""

from django.db import models


class Prompt(models.Model):
    """One named prompt of one tenant."""

    tenant = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=100)
    text = models.TextField()
    max_tokens = models.PositiveIntegerField(default=512)

    class Meta:
        unique_together = [("tenant", "name")]

    def __str__(self) -> str:
        return f"{self.tenant}/{self.name}"
