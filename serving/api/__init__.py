"""The HTTP layer of the serving API: request models, the runtime, the routes and streaming.

`serving/app.py` assembles them into the FastAPI app; the RAG steps themselves live in
`serving/rag.py`, free of HTTP.
"""
