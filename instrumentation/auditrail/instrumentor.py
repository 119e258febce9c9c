"""`AuditInstrumentor`: the OpenTelemetry instrumentor behind `auditrail-instrument`.

Registered under the `opentelemetry_instrumentor` entry point, so `opentelemetry-instrument` loads it
too. It reads audit.yaml ($AUDITRAIL_CONFIG or ./audit.yaml), starts the audit pipeline and patches
every target whenever its module is imported.

    from auditrail.instrumentor import AuditInstrumentor
    AuditInstrumentor().instrument()                    # audit.yaml from the environment
    AuditInstrumentor().instrument(config=load_config("audit.yaml"), exporter=my_exporter)
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from .config import AuditConfig, ConfigError, config_path, load_config
from .context import impersonations
from .setup import configure, shutdown
from .web import install_request_capture
from .wrapping import patcher

_log = logging.getLogger("auditrail")


class AuditInstrumentor(BaseInstrumentor):
    """Wraps the targets of audit.yaml and emits their audit events."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """None: the targets are the app's own code."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        config: AuditConfig | None = kwargs.get("config")
        if config is None:
            path = config_path(kwargs.get("config_path"))
            if path is None:
                _log.warning("auditrail: no audit.yaml here and AUDITRAIL_CONFIG is not set; nothing is audited")
                return
            try:
                config = load_config(path)
            except ConfigError as exc:
                # Under opentelemetry-instrument nothing validated the file beforehand: say it loudly.
                _log.error("auditrail: %s; nothing is audited", exc)
                return
        configure(config, exporter=kwargs.get("exporter"))
        patcher.install(config.events)
        install_request_capture(patcher)

    def _uninstrument(self, **kwargs: Any) -> None:
        patcher.uninstall()
        impersonations.clear()
        shutdown()
