"""Turning what the pipeline knows into words: label phrases, prompt templates, prompt hashes."""
