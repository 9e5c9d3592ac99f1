"""From label probabilities to what is written: label schemes, decoding, the
training targets, and the one place that writes on Docs.

Pure like `align`: no torch, no transformers.
"""
