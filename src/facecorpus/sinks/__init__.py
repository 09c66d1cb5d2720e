"""Sinks: WebDataset shards, manifest, rejects and the end-of-run files."""
