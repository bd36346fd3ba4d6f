"""Text analysis shared by ingest, search, providers and re-index: one tokenizer for both backends."""
