"""Loaded by Python at start-up in processes run by `auditrail-instrument` (this folder is on PYTHONPATH)."""

from auditrail.launcher import bootstrap

bootstrap()
