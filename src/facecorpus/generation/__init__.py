"""Generators: the no-LLM templates generator and the OpenAI-compatible LLM generator."""
