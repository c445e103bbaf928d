"""Lumeau backend: ingest, storage, the numerical core, the API and the console."""
