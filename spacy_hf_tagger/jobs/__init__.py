"""Corpus jobs: load a pipeline, read records, annotate them (in process or on
Ray Data), write resumable outputs, and check what reduced precision costs.
"""
