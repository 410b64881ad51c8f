"""Text → vectors (encoders) and vectors → neighbours (vector stores)."""
