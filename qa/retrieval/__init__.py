"""Retrieval: lexical (BM25 over Chinese tokens), dense (in embeddings/), fusion, abstention."""
