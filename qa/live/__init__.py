"""Live ingestion: web pages and feeds fetched, extracted and written through the engine's index service."""
