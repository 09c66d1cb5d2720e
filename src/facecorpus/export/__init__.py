"""Exports of a facecorpus output for training frameworks: LLaMA-Factory ShareGPT, LLaVA, JSON lines."""
