"""The output folder's end-of-run side: bounded-memory summaries (summary.py) and the streaming
finalize that writes index.json, stats.json and the card from what is on storage (finalize.py).

Layout names, atomic writes, run.json, resume state and `validate` still live in sinks/ and
validation/ (see docs/dataflow.md, "Not done").
"""
