"""Text processing below both the index and retrieval: folding (normalize), words (tokenize), BM25 (bm25).

Nothing here imports ``qa.index`` or ``qa.retrieval``; both build on it.
"""
