"""`AuditInstrumentor`: the OpenTelemetry instrumentor behind `auditrail-instrument`.

Registered under the `opentelemetry_instrumentor` entry point, so `opentelemetry-instrument` loads it
too. It reads audit.yaml ($AUDITRAIL_CONFIG or ./audit.yaml), starts the audit pipeline, patches
every target whenever its module is imported, and sets up the built-in integrations (integrations/).

    from auditrail.instrumentor import AuditInstrumentor
    AuditInstrumentor().instrument()                    # audit.yaml from the environment
    AuditInstrumentor().instrument(config=load_config("audit.yaml"), exporter=my_exporter)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from .config import AuditConfig, ConfigError, config_path
from .context import impersonations
from .integrations import setup_integrations, teardown_integrations
from .launcher import LAUNCH_ENV, load_quietly
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
                config, notes = load_quietly(path)
            except ConfigError as exc:
                # Under opentelemetry-instrument nothing validated the file beforehand: say it loudly.
                _log.error("auditrail: %s; nothing is audited", exc)
                return
            if not _warned_by_launcher(path):  # else auditrail-instrument printed them: once is enough
                for note in notes:
                    _log.warning("auditrail: warning: %s", note)
        configure(config, exporter=kwargs.get("exporter"))
        patcher.install(config.events)
        install_request_capture(patcher)
        # The libraries' own actions (integrations/), each enabled when its library is imported.
        setup_integrations(config.integrations, patcher, (spec.module for spec in config.events))

    def _uninstrument(self, **kwargs: Any) -> None:
        teardown_integrations()
        patcher.uninstall()
        impersonations.clear()
        shutdown()


def _warned_by_launcher(path: Any) -> bool:
    """Whether auditrail-instrument already printed this config's warnings (in this process or a parent)."""
    try:
        launch = json.loads(os.environ.get(LAUNCH_ENV, ""))
    except ValueError:
        return False
    return isinstance(launch, dict) and launch.get("warned") == os.path.abspath(path)
