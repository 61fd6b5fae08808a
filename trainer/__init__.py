"""Standalone ESPCN trainer: config, model, data, train, eval, export (see docs/DESIGN.md)."""
