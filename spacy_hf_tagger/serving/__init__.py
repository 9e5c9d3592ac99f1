"""Serving one pipeline to many callers: concurrent calls batched together."""
