"""The bundle's manifest: format, required fields, the file rules and checksums, for writer and reader.

A bundle is a directory whose `manifest.json` names the format and version, describes the model and
lists every other file with its size and sha256 (the layout is documented in `serving/bundle.py`).
The exporter (`recsys.export`) writes it with these names and `sha256_file`; the server (`serving`)
reads it with `read_manifest` and checks the files with `verify_files`. Standard library only (no
numpy, no torch): both sides import it, and it imports neither.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bundleformat.signature import SignatureError, verify_manifest

FORMAT = "prefengine-bundle"
FORMAT_VERSION = 1  # what the exporter writes
SUPPORTED_FORMAT_VERSIONS = (1,)  # what the server reads
MANIFEST = "manifest.json"
FILES = (
    "user_tower.onnx",
    "sequence_tower.onnx",
    "item_index.faiss",
    "item_vectors.npy",
    "item_popularity.npy",
    "seen_indptr.npy",
    "seen_indices.npy",
    "users.json",
    "items.json",
)
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "bundle_version": str,
    "created_at": str,
    "model": dict,
    "embedding_dim": int,
    "n_items": int,
    "n_users": int,
    "vocab_digest": str,
    "metrics": dict,
    "index": dict,
    "versions": dict,
    "files": dict,
}


class BundleError(Exception):
    """A bundle that cannot be served: the message names the directory, file and what is wrong."""

    def __init__(self, path: Path | str, message: str):
        super().__init__(f"bundle {path}: {message}")
        self.path = str(path)
        self.message = message

    def public(self, root: Path | str | None) -> str:
        """The message for an API reply: the bundle named relative to `root`, never by its host path."""
        name = public_name(self.path, root)
        return f"bundle {name}: {self.message.replace(self.path, name)}"


def public_name(path: Path | str, root: Path | str | None) -> str:
    """`path` as a client may see it: relative to `root` when inside it, else only its last part."""
    path = Path(path)
    if root is not None and path.is_relative_to(root):
        relative = path.relative_to(root).as_posix()
        return relative if relative != "." else path.name
    return path.name


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(bundle_dir: Path | str, key: bytes | None = None) -> dict[str, Any]:
    """The parsed manifest after checking its format, version and field types, and with a `key`, its
    HMAC-SHA256 signature (`bundleformat.signature`)."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(bundle_dir, "is not a directory")
    path = bundle_dir / MANIFEST
    if path.is_symlink():
        raise BundleError(bundle_dir, f"{MANIFEST} is a symbolic link; every bundle file must be a regular file "
                                      "inside the bundle directory")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(bundle_dir, f"has no {MANIFEST}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(bundle_dir, f"{MANIFEST} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise BundleError(bundle_dir, f"{MANIFEST} must hold a JSON object")
    if manifest.get("format") != FORMAT:
        raise BundleError(bundle_dir, f"{MANIFEST}: 'format' is {manifest.get('format')!r}, expected {FORMAT!r}")
    version = manifest.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleError(bundle_dir, f"{MANIFEST}: format_version {version!r} is not supported "
                                      f"(this server reads {list(SUPPORTED_FORMAT_VERSIONS)})")
    for field, kind in REQUIRED_FIELDS.items():
        if field not in manifest:
            raise BundleError(bundle_dir, f"{MANIFEST}: missing field '{field}'")
        if not isinstance(manifest[field], kind) or (kind is int and isinstance(manifest[field], bool)):
            raise BundleError(bundle_dir, f"{MANIFEST}: field '{field}' must be {getattr(kind, '__name__', kind)}")
    if key is not None:
        try:
            verify_manifest(manifest, key)
        except SignatureError as error:
            raise BundleError(bundle_dir, f"{MANIFEST}: {error}") from None
    return manifest


def verify_files(bundle_dir: Path | str, manifest: dict[str, Any]) -> None:
    """Every required file is listed, present, of the listed size and sha256; nothing unlisted lies beside them."""
    bundle_dir = Path(bundle_dir)
    listed = manifest["files"]
    missing = [name for name in FILES if name not in listed]
    if missing:
        raise BundleError(bundle_dir, f"{MANIFEST}: 'files' does not list {missing}")
    entries = list(bundle_dir.iterdir())
    for entry in entries:
        # A symbolic link (even one listed with the right checksum) would let the bundle read any file
        # of the host; a directory or device is no bundle file either.
        if entry.is_symlink():
            raise BundleError(bundle_dir, f"{entry.name} is a symbolic link; every bundle file must be a regular "
                                          "file inside the bundle directory")
        if not entry.is_file():
            raise BundleError(bundle_dir, f"{entry.name} is not a regular file")
    present = {p.name for p in entries} - {MANIFEST}
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise BundleError(bundle_dir, f"files not listed in {MANIFEST}: {unlisted}")
    for name, entry in listed.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise BundleError(bundle_dir, f"{MANIFEST}: files['{name}'] needs a 'sha256'")
        if Path(name).name != name:
            raise BundleError(bundle_dir, f"{MANIFEST}: file name {name!r} must not contain a directory")
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(bundle_dir, f"{name} is listed in {MANIFEST} but missing")
        if "bytes" in entry and path.stat().st_size != entry["bytes"]:
            raise BundleError(bundle_dir, f"{name} has {path.stat().st_size} bytes, {MANIFEST} says {entry['bytes']}")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise BundleError(bundle_dir, f"{name}: sha256 {actual[:12]}... does not match {MANIFEST} "
                                          f"({entry['sha256'][:12]}...); the file was changed or truncated")
