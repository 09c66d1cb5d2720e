"""The output folder's end-of-run side: the streaming finalize that writes index.json, stats.json and
the card from what is on storage (finalize.py), from sinks/summaries.py's bounded-memory counts.

Layout names, atomic writes, run.json, resume state and `validate` still live in sinks/ and
validation/ (see docs/dataflow.md, "Not done").
"""
