"""`auditrail integrations`: every built-in integration, whether its library is here, and what it emits."""

from __future__ import annotations

import argparse
import json
import sys

from ..config import ConfigError, config_path, load_config
from . import covered_by_events, integration_classes, library_status


def main_integrations(argv: list[str]) -> int:
    """List the integrations (as a table, or JSON with --json); with a config, whether each is on."""
    parser = argparse.ArgumentParser(prog="auditrail integrations",
                                     description="List auditrail's built-in integrations.")
    parser.add_argument("--config", help="audit.yaml to read `integrations:` from (default: $AUDITRAIL_CONFIG or "
                                         "./audit.yaml, when there is one)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    settings: dict[str, object] = {}
    targets: list[str] = []
    path = config_path(args.config)
    if path is not None:
        try:
            config = load_config(path)
            settings, targets = config.integrations, [spec.module for spec in config.events]
        except ConfigError as exc:
            print(f"auditrail integrations: {exc}", file=sys.stderr)
            return 2
    rows = []
    for cls in integration_classes():
        status = library_status(cls)
        off = cls.name in settings and settings[cls.name] is None
        by_hand = cls.name not in settings and covered_by_events(cls, targets)
        rows.append({
            "name": cls.name, "library": cls.distribution, "installed": status.version if status.present else None,
            "present": status.present, "supported": cls.versions,
            "enabled": status.present and not off and not by_hand, "off_in_config": off, "by_hand": by_hand,
            "events": list(cls.events), "options": {k: o.help for k, o in cls.options.items()},
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'integration':<20} {'library':<20} {'installed':<12} {'supported':<10} {'status':<9} events")
    for row in rows:
        installed = (row["installed"] or "yes") if row["present"] else "-"
        status = ("off" if row["off_in_config"] else "by hand" if row["by_hand"] else
                  "on" if row["present"] else "idle")
        print(f"{row['name']:<20} {row['library']:<20} {installed:<12} {row['supported']:<10} {status:<9} "
              f"{', '.join(row['events'])}")
    print("\non: its library is installed and it records; idle: not installed, costs nothing; "
          "off: `integrations: {NAME: false}`; by hand: `events:` targets the library, so it stands aside "
          "(`integrations: {NAME: true}` runs both); in " + (str(path) if path else "audit.yaml"))
    return 0
