"""The API's routes, one module per group: OpenAI-compatible, RAG, and operations."""
