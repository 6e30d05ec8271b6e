"""Store contracts (:mod:`storage.base`) and their backends.

PostgreSQL through asyncpg (:mod:`storage.postgres`, embedded by default via
:mod:`storage.embedded_postgres`), cache/locks/pub-sub in-process
(:mod:`storage.memory`) or in Redis (:mod:`storage.redis`), all opened from
the settings by :func:`storage.services.open_stores`; files in the blob store
(:mod:`storage.blobs_base`) on the filesystem (:mod:`storage.blobs_fs`) or S3
(:mod:`storage.blobs_s3`), keyed in the drive layout (:mod:`storage.blob_keys`).
"""
