"""The knowledge base: read a bot's ``.gbkb`` documents, chunk, embed, index and search them.

:class:`pipeline.kb.service.KnowledgeBase` is the facade the pipeline and the
CLI call; the modules beside it are its parts (readers, chunking, embedders,
ingestion, retrieval).
"""
