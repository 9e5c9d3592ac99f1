"""Where subword pieces, spaCy tokens, words, sentences and windows meet.

Pure functions over numpy arrays and spaCy Docs: no torch, no transformers
(tests/test_layout.py fails if one is imported here), so every
rule is tested without a model.
"""
