"""Credentials out of everything flowops prints."""

from __future__ import annotations

from urllib.parse import urlparse, urlunparse


def redact(uri: str) -> str:
    """The URI without its password (for every message flowops prints)."""
    parsed = urlparse(uri)
    if parsed.password is None:
        return uri
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
    return urlunparse(parsed._replace(netloc=netloc))
