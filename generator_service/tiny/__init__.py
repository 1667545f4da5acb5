"""Offline building blocks for the tiny twins of each generator family (tokenizers, small configs)."""
