"""Verified API keys remembered for a few seconds, revocations heard from every instance.

Checking a key is a PostgreSQL round trip, a tenth of what a whole web turn costs. This
:class:`~storage.api_keys.ApiKeyStore` keeps the grant of each key it verified for
``ttl`` seconds (by the key's SHA-256: a hit is the same key, byte for byte), bounded to
``max_entries``, least recently used out first. Unknown, wrong and revoked keys are never
remembered: each is checked against the table again.

A revocation takes effect at once: the revoking instance forgets the key, then publishes
its id on :data:`REVOKED_CHANNEL`, and every instance that hears it forgets the key too.
Remembered grants are served only while this instance is subscribed (:meth:`listen`
running); a subscription that broke (Redis down) sends every check to the table until it
is back. A revocation that no subscriber can hear (the CLI's own process without Redis)
is in force everywhere within ``ttl``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict

from storage.api_keys import ApiKey, ApiKeyStore, Role
from storage.base import PubSub, StorageError

log = logging.getLogger(__name__)

#: Where revoked keys' ids are published.
REVOKED_CHANNEL = "api-keys:revoked"
DEFAULT_TTL = 5.0
_RESUBSCRIBE = (0.5, 1.0, 2.0, 5.0)


class CachedApiKeys:
    """:class:`~storage.api_keys.ApiKeyStore` in front of ``keys`` (see the module)."""

    def __init__(
        self,
        keys: ApiKeyStore,
        pubsub: PubSub,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = 10_000,
    ) -> None:
        self._keys = keys
        self._pubsub = pubsub
        self.ttl = ttl
        self._max = max_entries
        self._grants: OrderedDict[bytes, tuple[float, ApiKey]] = OrderedDict()
        self._subscribed = asyncio.Event()
        self._revocations = 0
        self.hits = 0
        self.misses = 0

    @property
    def subscribed(self) -> bool:
        """Whether revocations of other instances are heard now (grants are served then)."""
        return self._subscribed.is_set()

    async def listen(self) -> None:
        """Hear revocations until cancelled; run it as a task for the instance's life."""
        failures = 0
        while True:
            try:
                async with self._pubsub.subscribe(REVOKED_CHANNEL) as revoked:
                    self._grants.clear()  # revocations may have been missed while deaf
                    self._subscribed.set()
                    failures = 0
                    async for key_id in revoked:
                        self._forget(key_id.decode(errors="replace"))
            except (StorageError, OSError) as e:
                self._subscribed.clear()
                self._grants.clear()
                pause = _RESUBSCRIBE[min(failures, len(_RESUBSCRIBE) - 1)]
                failures += 1
                log.warning("api keys: revocations unheard (%s); subscribing in %.1f s", e, pause)
                await asyncio.sleep(pause)
            finally:
                self._subscribed.clear()

    async def wait_subscribed(self) -> None:
        await self._subscribed.wait()

    async def verify(self, key: str) -> ApiKey | None:
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        if self._subscribed.is_set():
            held = self._grants.get(digest)
            if held is not None and held[0] > now:
                self._grants.move_to_end(digest)
                self.hits += 1
                return held[1]
        self.misses += 1
        revocations = self._revocations
        grant = await self._keys.verify(key)
        if grant is None:
            self._grants.pop(digest, None)
        elif self._subscribed.is_set() and self._revocations == revocations:
            # (A revocation heard while the row was read may be of this very key.)
            self._grants[digest] = (now + self.ttl, grant)
            self._grants.move_to_end(digest)
            while len(self._grants) > self._max:
                self._grants.popitem(last=False)
        return grant

    async def revoke(self, key_id: str) -> bool:
        done = await self._keys.revoke(key_id)
        self._forget(key_id)
        try:
            await self._pubsub.publish(REVOKED_CHANNEL, key_id.encode())
        except (StorageError, OSError) as e:
            log.warning(
                "api keys: revocation of %s not published (%s): in force in %.0f s "
                "on other instances",
                key_id,
                e,
                self.ttl,
            )
        return done

    def _forget(self, key_id: str) -> None:
        self._revocations += 1
        for digest in [d for d, (_, grant) in self._grants.items() if grant.id == key_id]:
            del self._grants[digest]

    async def create(
        self, *, bot_id: str | None, role: Role, user_id: str | None = None, name: str = ""
    ) -> tuple[ApiKey, str]:
        return await self._keys.create(bot_id=bot_id, role=role, user_id=user_id, name=name)

    async def list_keys(self, bot_id: str | None = None) -> list[ApiKey]:
        return await self._keys.list_keys(bot_id)

    async def any_admin(self) -> bool:
        return await self._keys.any_admin()

    async def signing_key(self, name: str) -> bytes:
        return await self._keys.signing_key(name)
