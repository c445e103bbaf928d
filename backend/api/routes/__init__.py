"""Thin handlers, one module per resource: parse, call ``queries``, shape."""
