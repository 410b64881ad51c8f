"""The search index on disk: layout and manifest, incremental builds, loading."""
