"""Exports of a facecorpus output for training frameworks: LLaMA-Factory ShareGPT, FairFaceGPT's layout, LLaVA,
JSON lines, and a Hugging Face parquet dataset folder."""
