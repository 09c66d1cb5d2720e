"""The output folder (`--out DIR`, local, gs:// or s3://), on Beam FileSystems: its names
(layout.py), manifest columns (manifest.py), streamed readers (readers.py), bounded-memory counts
(summaries.py), run.json (run_info.py) and fingerprint (fingerprint.py), resume state (resume.py,
finished.py) and `facecorpus validate` (check.py, check_rejects.py, check_rules.py). docs/architecture.md has the table.

The Beam writers of shards and the end-of-run files (index, stats, card: sinks/finalize.py) sit in
sinks/, above review/: the card shows the reviewers' summary, and review reads the folder through here.
"""
