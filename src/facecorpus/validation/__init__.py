"""Checks between generation and the sink: every record is schema-valid before it is written."""
