"""Store contracts (:mod:`storage.base`) and their backends.

PostgreSQL through asyncpg (:mod:`storage.postgres`, embedded by default via
:mod:`storage.embedded_postgres`), cache/locks/pub-sub in-process
(:mod:`storage.memory`) or in Redis (:mod:`storage.redis`), all opened from
the settings by :func:`storage.services.open_stores`.
"""
