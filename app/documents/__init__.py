"""Documents: pages, the OCR pool, chunking, extraction schemas, vectors and search."""
