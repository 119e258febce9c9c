"""The admin, hijack's acquire/release, django-impersonate's start/stop, and a health check."""

from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("hijack/", include("hijack.urls")),
    path("impersonate/", include("impersonate.urls")),
    path("healthz", lambda request: HttpResponse("ok")),
]
