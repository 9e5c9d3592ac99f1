"""What `spacy train` resolves: the head and its update step, the sentence
batcher, logger, callbacks, schedules, the scorer, and the corpus converter.
"""
