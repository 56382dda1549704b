"""API keys and tenants, read from `ROADSIGNS_API_KEYS`.

Entries are `tenant:key`; a key may be written `sha256:<64 hex>` so that no plain key need be
stored. An entry without a tenant (the older form, a bare key) belongs to the tenant "default".
Without keys (development) every request is the tenant "default".

Keys are compared as SHA-256 digests with `hmac.compare_digest`, against every configured
key, so neither the time taken nor an early exit tells how much of a key was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

DEFAULT_TENANT = "default"
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def key_id(key: str) -> str:
    """Names a key without revealing it: the first 12 hex digits of its SHA-256, which are also
    those of its `sha256:` form in ROADSIGNS_API_KEYS. Reviews record it as who decided."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class KeyConfigError(ValueError):
    """A malformed ROADSIGNS_API_KEYS entry; the message never repeats the key itself."""


@dataclass(frozen=True)
class KeyRing:
    """The configured keys, as (tenant, SHA-256 digest of the key) pairs."""

    keys: tuple[tuple[str, bytes], ...]

    @classmethod
    def parse(cls, entries: list[str]) -> KeyRing:
        keys = []
        for number, entry in enumerate(entries, 1):
            tenant, sep, key = entry.partition(":")
            if not sep:  # a bare key, as before tenants existed
                tenant, key = DEFAULT_TENANT, entry
            if tenant == "sha256":
                raise KeyConfigError(
                    f"ROADSIGNS_API_KEYS entry {number} starts with 'sha256:': write it as tenant:sha256:<hex>"
                )
            if not _TENANT.fullmatch(tenant):
                raise KeyConfigError(
                    f"ROADSIGNS_API_KEYS entry {number}: the tenant must be 1-64 letters, digits, '.', '_' or '-'"
                )
            if key.startswith("sha256:"):
                if not _HEX_DIGEST.fullmatch(key[7:]):
                    raise KeyConfigError(
                        f"ROADSIGNS_API_KEYS entry {number}: sha256: must be followed by 64 hex digits"
                    )
                digest = bytes.fromhex(key[7:])
            elif key:
                digest = hashlib.sha256(key.encode()).digest()
            else:
                raise KeyConfigError(f"ROADSIGNS_API_KEYS entry {number} has an empty key")
            keys.append((tenant, digest))
        return cls(tuple(keys))

    def __bool__(self) -> bool:
        return bool(self.keys)

    def tenant_of(self, key: str) -> str | None:
        """The tenant whose key this is, or None. Looks at every key whatever it finds."""
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for tenant, expected in self.keys:
            if hmac.compare_digest(digest, expected) and found is None:
                found = tenant
        return found
