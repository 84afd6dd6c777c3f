"""The document pipeline's cores: page reading, chunking, extraction schemas and its SQL."""
