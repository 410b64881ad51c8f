"""Ingestion: read source files, clean scraped news pages into labelled segments, chunk them."""
