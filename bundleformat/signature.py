"""Optional HMAC-SHA256 signature of a bundle's manifest.

The manifest lists the sha256 of every other file of the bundle, so signing the manifest signs the
whole bundle. With the environment variable `PREFENGINE_BUNDLE_KEY` set, `python -m recsys export`
adds the signature and `python -m serving` refuses any bundle without a valid one: a person who can
write into the bundle directory, but does not hold the key, cannot get a bundle served.

The signature is stored in the manifest itself, as `"signature": {"algorithm": "HMAC-SHA256",
"hmac": <hex>}`, computed over the manifest without that field, serialised canonically (sorted keys,
no spaces, ASCII), so re-indenting the file does not break it but changing any value does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

KEY_ENV = "PREFENGINE_BUNDLE_KEY"
FIELD = "signature"
ALGORITHM = "HMAC-SHA256"


class SignatureError(ValueError):
    """A manifest whose signature is missing, malformed or wrong for the key; the message says which."""


def key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The signing key from `PREFENGINE_BUNDLE_KEY` (UTF-8 bytes), or None when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(KEY_ENV, "")
    return value.encode() if value else None


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    unsigned = {key: value for key, value in manifest.items() if key != FIELD}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _digest(manifest: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, _canonical(manifest), hashlib.sha256).hexdigest()


def sign_manifest(manifest: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of `manifest` with its signature field. Values are normalised through JSON first, so the
    signature covers exactly what a reader of the written file parses (tuples as lists and so on)."""
    if not key:
        raise SignatureError("the signing key is empty")
    normalised = json.loads(json.dumps({k: v for k, v in manifest.items() if k != FIELD}, allow_nan=False))
    return {**normalised, FIELD: {"algorithm": ALGORITHM, "hmac": _digest(normalised, key)}}


def verify_manifest(manifest: Mapping[str, Any], key: bytes) -> None:
    """Return if `manifest` carries a valid signature for `key`; SignatureError otherwise (constant-time compare)."""
    signature = manifest.get(FIELD)
    if signature is None:
        raise SignatureError(f"is not signed, and {KEY_ENV} is set: only signed bundles are served")
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM \
            or not isinstance(signature.get("hmac"), str):
        raise SignatureError(f"'{FIELD}' must be {{\"algorithm\": \"{ALGORITHM}\", \"hmac\": <hex>}}")
    try:
        expected = _digest(manifest, key)
    except ValueError:  # NaN or infinity somewhere: the writer never signs those
        raise SignatureError("the manifest holds a non-finite number and cannot carry a valid signature") from None
    if not hmac.compare_digest(signature["hmac"].encode(), expected.encode()):
        raise SignatureError(f"the manifest's signature does not match the key in {KEY_ENV} "
                             "(the manifest was changed, or signed with another key)")
