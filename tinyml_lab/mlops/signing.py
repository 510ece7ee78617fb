"""Signed model packages for over-the-air updates (Ed25519), and the model slot a device installs them into.

A package is what the cloud sends a device: the model bytes, a manifest
describing them, and an Ed25519 signature over both,

    ``package = MAGIC | len(manifest) | manifest | len(payload) | payload | signature``,
    ``signature = Sign_sk(MAGIC | len(manifest) | manifest | len(payload) | payload)``,

lengths as 4-byte big-endian integers, the manifest canonical JSON (sorted
keys, no spaces), the signature 64 bytes (RFC 8032). Two kinds of payload:

* ``full``: the graph's ``.npz`` serialization (:meth:`tinyml_lab.graph.Graph.save`);
* ``patch``: an ``.npz`` of the tensors a sparse update changed, to be written
  into a named base model; the manifest names the base (version and SHA-256)
  and the SHA-256 of the model the patch produces.

The manifest holds the model name, version, the payload's SHA-256 and size
(and for a patch the base and result hashes and the tensor names).
:func:`verify_package` accepts a package only if its framing is intact, a
signature is present, the signature verifies under the device's public key,
and the manifest matches the payload; anything else raises a
:class:`SignatureError` saying which check failed. A :class:`ModelSlot` (a
device's model storage) installs only what verifies and, for a patch, only
onto the base it names; otherwise it keeps running the model it has and
records the rejection.

Keys here are derived from a seed (:func:`signing_key`) so that a simulation
is reproducible; a real fleet's key is drawn from a secure random source and
kept in a hardware security module, with only the public key on the devices.
Ed25519 signatures are deterministic, so equal inputs give equal packages.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import FileFormatError, TinyMLError
from ..graph import Graph

MAGIC = b"TMLPKG\x00\x01"
SIGNATURE_BYTES = 64
KINDS = ("full", "patch")
_LEN = struct.Struct(">I")


class SignatureError(TinyMLError, ValueError):
    """A package that must not be installed: unsigned, tampered, truncated, signed with another key,
    or whose manifest does not describe its payload."""


# --------------------------------------------------------------------------- keys

def signing_key(seed: int | bytes):
    """An Ed25519 private key derived from ``seed``: ``sk = SHA-256("tinyml-lab ota key" | seed)`` (32 bytes).

    Args:
        seed: an int >= 0 or bytes; equal seeds give equal keys.

    Returns:
        A ``cryptography`` ``Ed25519PrivateKey``.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if isinstance(seed, (bytes, bytearray)):
        material = bytes(seed)
    elif isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:
        material = str(seed).encode()
    else:
        raise TinyMLError(f"a signing key seed must be an int >= 0 or bytes, got {seed!r}")
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"tinyml-lab ota key\x00" + material).digest())


def public_key(key):
    """The ``Ed25519PublicKey`` of a private key, a public key, or its 32 raw bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, Ed25519PrivateKey):
        return key.public_key()
    if isinstance(key, (bytes, bytearray)) and len(key) == 32:
        return Ed25519PublicKey.from_public_bytes(bytes(key))
    raise TinyMLError(f"expected an Ed25519 key (private, public, or 32 raw public-key bytes), "
                      f"got {type(key).__name__}")


def public_key_bytes(key) -> bytes:
    """The 32 raw bytes of the public key of ``key`` (what a device stores)."""
    from cryptography.hazmat.primitives import serialization

    return public_key(key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --------------------------------------------------------------------------- payloads

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def graph_bytes(graph: Graph) -> bytes:
    """The bytes of ``graph.save(...)``: the graph's ``.npz`` file (deterministic: NumPy writes fixed zip times)."""
    with tempfile.TemporaryDirectory(prefix="tinyml-pkg-") as d:
        return graph.save(Path(d) / "model.npz").read_bytes()


def graph_from_bytes(data: bytes) -> Graph:
    """The graph a :func:`graph_bytes` payload holds (:meth:`Graph.load`); :class:`FileFormatError` if corrupt."""
    with tempfile.TemporaryDirectory(prefix="tinyml-pkg-") as d:
        p = Path(d) / "model.npz"
        p.write_bytes(data)
        return Graph.load(p)


def tensors_bytes(tensors: Mapping[str, np.ndarray]) -> bytes:
    """An ``.npz`` of named arrays, names sorted (a patch's payload)."""
    if not tensors:
        raise TinyMLError("a patch needs at least one tensor")
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.ascontiguousarray(tensors[k]) for k in sorted(tensors)})
    return buffer.getvalue()


def tensors_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise FileFormatError(f"the patch payload is not a readable .npz ({exc})") from None


# --------------------------------------------------------------------------- manifest and package

@dataclass(frozen=True)
class Manifest:
    """What a package claims to hold; signed together with the payload.

    ``sha256`` and ``size`` describe the payload. A ``patch`` also names its
    ``base_version`` and ``base_sha256`` (the model it applies to),
    ``result_sha256`` (the model it produces) and the ``tensors`` it writes.
    """

    model: str
    version: str
    sha256: str
    size: int
    kind: str = "full"
    base_version: str | None = None
    base_sha256: str | None = None
    result_sha256: str | None = None
    tensors: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        d = {"model": self.model, "version": self.version, "sha256": self.sha256, "size": self.size,
             "kind": self.kind, "base_version": self.base_version, "base_sha256": self.base_sha256,
             "result_sha256": self.result_sha256, "tensors": list(self.tensors)}
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Manifest":
        try:
            d = json.loads(data.decode())
            m = cls(str(d["model"]), str(d["version"]), str(d["sha256"]), int(d["size"]), str(d["kind"]),
                    d.get("base_version"), d.get("base_sha256"), d.get("result_sha256"),
                    tuple(str(t) for t in d.get("tensors", ())))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SignatureError(f"the manifest is not valid JSON with model, version, sha256, size, kind ({exc})") \
                from None
        if m.kind not in KINDS:
            raise SignatureError(f"the manifest's kind {m.kind!r} is not one of {', '.join(KINDS)}")
        return m

    @property
    def result(self) -> str:
        """SHA-256 of the model a device runs after installing it: the payload's for ``full``,
        ``result_sha256`` for a patch."""
        return self.sha256 if self.kind == "full" else str(self.result_sha256)


@dataclass(frozen=True)
class Package:
    """A verified package: its manifest and payload bytes."""

    manifest: Manifest
    payload: bytes

    def graph(self) -> Graph:
        if self.manifest.kind != "full":
            raise TinyMLError(f"package {self.manifest.version} is a patch; apply it with ModelSlot.install")
        return graph_from_bytes(self.payload)

    def tensors(self) -> dict[str, np.ndarray]:
        if self.manifest.kind != "patch":
            raise TinyMLError(f"package {self.manifest.version} is a full model, not a patch")
        return tensors_from_bytes(self.payload)


def _frame(manifest: bytes, payload: bytes) -> bytes:
    return MAGIC + _LEN.pack(len(manifest)) + manifest + _LEN.pack(len(payload)) + payload


def sign_package(payload: bytes, manifest: Manifest, key) -> bytes:
    """The package bytes: framing, manifest, payload and the Ed25519 signature of ``key`` over them."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not isinstance(key, Ed25519PrivateKey):
        raise TinyMLError(f"signing needs an Ed25519 private key (see signing_key), got {type(key).__name__}")
    body = _frame(manifest.to_bytes(), bytes(payload))
    return body + key.sign(body)


def package_model(graph: Graph, version: str, key, model: str | None = None) -> bytes:
    """A signed ``full`` package of ``graph`` (its ``.npz`` bytes) as ``version``."""
    data = graph_bytes(graph)
    m = Manifest(model or graph.name, str(version), sha256(data), len(data), "full")
    return sign_package(data, m, key)


def package_patch(tensors: Mapping[str, np.ndarray], version: str, base_version: str, base_sha256: str,
                  result_sha256: str, key, model: str) -> bytes:
    """A signed ``patch`` package: ``tensors`` to write into the model ``base_version`` (hash ``base_sha256``),
    giving the model with hash ``result_sha256``."""
    data = tensors_bytes(tensors)
    m = Manifest(model, str(version), sha256(data), len(data), "patch", str(base_version), str(base_sha256),
                 str(result_sha256), tuple(sorted(tensors)))
    return sign_package(data, m, key)


def verify_package(blob: bytes, public_key_or_bytes) -> Package:
    """Check a package and return it; raise :class:`SignatureError` naming the first check that fails.

    Checks, in order: the magic bytes; the framing (lengths within the blob:
    else *truncated*); a signature present (else *unsigned*) and exactly 64
    bytes; the Ed25519 signature under the given public key (a flipped bit
    anywhere, or another signer's key, fails here); the manifest parses; the
    payload's size and SHA-256 equal the manifest's.
    """
    from cryptography.exceptions import InvalidSignature

    key = public_key(public_key_or_bytes)
    blob = bytes(blob)
    if len(blob) < len(MAGIC) or blob[:len(MAGIC)] != MAGIC:
        raise SignatureError("not a model package (bad magic bytes)")
    pos = len(MAGIC)
    if len(blob) < pos + 4:
        raise SignatureError("package truncated inside its header")
    (m_len,) = _LEN.unpack_from(blob, pos)
    pos += 4
    if len(blob) < pos + m_len + 4:
        raise SignatureError(f"package truncated: the manifest should be {m_len} bytes")
    manifest_bytes = blob[pos: pos + m_len]
    pos += m_len
    (p_len,) = _LEN.unpack_from(blob, pos)
    pos += 4
    if len(blob) < pos + p_len:
        raise SignatureError(f"package truncated: the payload should be {p_len} bytes, "
                             f"{len(blob) - pos} are present")
    payload = blob[pos: pos + p_len]
    pos += p_len
    signature = blob[pos:]
    if not signature:
        raise SignatureError("package is unsigned: no signature follows the payload")
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureError(f"package signature is {len(signature)} bytes, not {SIGNATURE_BYTES} "
                             f"(truncated or padded)")
    try:
        key.verify(signature, blob[:pos])
    except InvalidSignature:
        raise SignatureError("signature does not verify: the package was altered, or signed with another key") \
            from None
    manifest = Manifest.from_bytes(manifest_bytes)
    if manifest.size != len(payload) or manifest.sha256 != sha256(payload):
        raise SignatureError(f"manifest of {manifest.version} does not describe the payload (size {manifest.size} "
                             f"vs {len(payload)}, or a different SHA-256)")
    return Package(manifest, payload)


# --------------------------------------------------------------------------- a device's model storage

@dataclass(frozen=True)
class InstallRecord:
    """One install attempt: the version offered, whether it was installed, why not, and its bytes."""

    version: str
    installed: bool
    reason: str
    nbytes: int
    kind: str = ""


@dataclass
class ModelSlot:
    """A device's model storage: the running model, the previous one (for rollback), and the install log.

    ``install(blob)`` verifies a package with the device's public key and
    installs it, or keeps the running model and records why not. A ``patch``
    installs only onto the model whose hash it names, and only if every
    tensor it writes exists in that model with the same shape and dtype.
    """

    graph: Graph
    version: str
    sha256: str
    public_key: bytes
    model: str = ""
    previous: tuple[Graph, str, str] | None = None
    log: list[InstallRecord] = field(default_factory=list)

    @classmethod
    def from_graph(cls, graph: Graph, version: str, key, model: str | None = None) -> "ModelSlot":
        """A slot running ``graph`` as ``version``, trusting the public key of ``key``."""
        return cls(graph, str(version), sha256(graph_bytes(graph)), public_key_bytes(key), model or graph.name)

    @property
    def rejected(self) -> int:
        return sum(not r.installed for r in self.log)

    def install(self, blob: bytes) -> bool:
        """Verify and install a package; True if installed. A rejection leaves the running model as it was."""
        try:
            pkg = verify_package(blob, self.public_key)
            m = pkg.manifest
            if self.model and m.model != self.model:
                raise SignatureError(f"package is for model {m.model!r}, this device runs {self.model!r}")
            if m.kind == "full":
                graph = pkg.graph()
            else:
                if m.base_sha256 != self.sha256:
                    raise SignatureError(f"patch {m.version} applies to {m.base_version} "
                                         f"(sha256 {str(m.base_sha256)[:12]}...), not to the running "
                                         f"{self.version} (sha256 {self.sha256[:12]}...)")
                graph = self._patched(pkg.tensors(), m)
        except (SignatureError, FileFormatError) as exc:
            version = _claimed_version(blob)
            self.log.append(InstallRecord(version, False, str(exc), len(blob)))
            return False
        self.previous = (self.graph, self.version, self.sha256)
        self.graph, self.version, self.sha256 = graph, m.version, m.result
        self.log.append(InstallRecord(m.version, True, "installed", len(blob), m.kind))
        return True

    def _patched(self, tensors: dict[str, np.ndarray], m: Manifest) -> Graph:
        if sorted(tensors) != sorted(m.tensors):
            raise SignatureError(f"patch {m.version} holds tensors {sorted(tensors)}, its manifest lists "
                                 f"{sorted(m.tensors)}")
        g = self.graph.copy()
        for name, a in tensors.items():
            t = g.tensors.get(name)
            if t is None or not t.is_const:
                raise SignatureError(f"patch {m.version} writes {name!r}, which is not a constant of the model")
            if tuple(a.shape) != tuple(t.shape) or str(a.dtype) != t.dtype:
                raise SignatureError(f"patch {m.version}: {name!r} is {a.dtype}{list(a.shape)}, the model holds "
                                     f"{t.dtype}{list(t.shape)}")
            t.data = a.copy()
        return g

    def swap(self) -> bool:
        """Run the stored previous model and keep the running one as previous (a dual-bank switch, no
        bytes); False if there is no previous model."""
        if self.previous is None:
            return False
        current = (self.graph, self.version, self.sha256)
        self.graph, self.version, self.sha256 = self.previous
        self.previous = current
        return True

    def rollback(self) -> bool:
        """Go back to the previous model (no bytes needed: it is still stored), logged; False if there is none."""
        if not self.swap():
            return False
        self.log.append(InstallRecord(self.version, True, "rollback", 0, "rollback"))
        return True

    def holds(self, version: str) -> bool:
        """Whether ``version`` is stored, running or previous."""
        return self.version == version or (self.previous is not None and self.previous[1] == version)


def _claimed_version(blob: bytes) -> str:
    """The version a (possibly bad) package claims, for the rejection log; ``"?"`` if unreadable."""
    try:
        (m_len,) = _LEN.unpack_from(blob, len(MAGIC))
        return str(json.loads(bytes(blob[len(MAGIC) + 4: len(MAGIC) + 4 + m_len]).decode())["version"])
    except Exception:  # noqa: BLE001 - any damage means the claim cannot be read
        return "?"


__all__ = ["SignatureError", "signing_key", "public_key", "public_key_bytes", "graph_bytes", "graph_from_bytes",
           "tensors_bytes", "tensors_from_bytes", "Manifest", "Package", "sign_package", "package_model",
           "package_patch", "verify_package", "ModelSlot", "InstallRecord", "MAGIC", "SIGNATURE_BYTES", "sha256"]
