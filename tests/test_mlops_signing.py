"""Signed over-the-air packages: round trip, every kind of damage rejected, devices keep their model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import strategies  # noqa: F401  (loads the ci profile)
from tinyml_lab import zoo
from tinyml_lab.errors import TinyMLError
from tinyml_lab.mlops.signing import (
    MAGIC,
    Manifest,
    ModelSlot,
    SignatureError,
    graph_bytes,
    package_model,
    package_patch,
    public_key,
    public_key_bytes,
    sha256,
    sign_package,
    signing_key,
    verify_package,
)
from tinyml_lab.quant import quantize_model

KEY = signing_key(7)
OTHER = signing_key(8)


@pytest.fixture(scope="module")
def model():
    g = zoo.get("digits-cnn")
    x = np.random.default_rng(0).random((16, 16, 16, 1), dtype=np.float32)
    return quantize_model(g, x)


@pytest.fixture(scope="module")
def blob(model) -> bytes:
    return package_model(model, "v2", KEY)


def regions(blob: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges of the manifest, the payload and the signature in a package."""
    m_len = int.from_bytes(blob[8:12], "big")
    p0 = 12 + m_len + 4
    p_len = int.from_bytes(blob[12 + m_len: p0], "big")
    return {"manifest": (12, 12 + m_len), "payload": (p0, p0 + p_len), "signature": (p0 + p_len, len(blob))}


def flip(blob: bytes, i: int, bit: int = 0) -> bytes:
    b = bytearray(blob)
    b[i] ^= 1 << bit
    return bytes(b)


def test_keys_are_deterministic_and_distinct():
    assert public_key_bytes(signing_key(7)) == public_key_bytes(KEY)
    assert public_key_bytes(signing_key(b"fleet")) == public_key_bytes(signing_key(b"fleet"))
    assert public_key_bytes(KEY) != public_key_bytes(OTHER)
    assert len(public_key_bytes(KEY)) == 32
    with pytest.raises(TinyMLError):
        signing_key(-1)


def test_round_trip(model, blob):
    pkg = verify_package(blob, public_key_bytes(KEY))
    data = graph_bytes(model)
    assert pkg.manifest == Manifest(model.name, "v2", sha256(data), len(data), "full")
    assert pkg.payload == data
    g = pkg.graph()
    for name, t in model.tensors.items():
        if t.is_const:
            np.testing.assert_array_equal(g.tensors[name].data, t.data)
    assert package_model(model, "v2", KEY) == blob  # deterministic signature, deterministic bytes


def test_format_is_what_the_docstring_says(blob):
    # an independent reading: the last 64 bytes are an Ed25519 signature over everything before them
    assert blob.startswith(MAGIC)
    r = regions(blob)
    assert r["signature"][1] - r["signature"][0] == 64
    public_key(KEY).verify(blob[-64:], blob[:-64])


@pytest.mark.parametrize("where", ["manifest", "payload", "signature"])
def test_flipped_byte_in_each_region_is_rejected(blob, where):
    lo, hi = regions(blob)[where]
    for i in (lo, (lo + hi) // 2, hi - 1):
        with pytest.raises(SignatureError, match="signature does not verify"):
            verify_package(flip(blob, i, 3), KEY)


@given(st.data())
def test_any_flipped_bit_is_rejected(blob, data):
    i = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.integers(0, 7))
    with pytest.raises(SignatureError):
        verify_package(flip(blob, i, bit), KEY)


@given(st.data())
def test_any_truncation_is_rejected(blob, data):
    n = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(SignatureError):
        verify_package(blob[:n], KEY)


def test_unsigned_padded_and_wrong_key(blob):
    body = blob[:-64]
    with pytest.raises(SignatureError, match="unsigned"):
        verify_package(body, KEY)
    with pytest.raises(SignatureError, match="65 bytes"):
        verify_package(blob + b"\x00", KEY)
    with pytest.raises(SignatureError, match="another key"):
        verify_package(blob, OTHER)
    with pytest.raises(SignatureError, match="magic"):
        verify_package(b"PK\x03\x04" + blob, KEY)


def test_signed_but_lying_manifest_is_rejected(model):
    data = graph_bytes(model)
    lying = Manifest(model.name, "v3", sha256(b"something else"), len(data))
    with pytest.raises(SignatureError, match="does not describe"):
        verify_package(sign_package(data, lying, KEY), KEY)


# --------------------------------------------------------------------------- devices

def test_device_installs_verified_package(model, blob):
    base = model.copy()
    slot = ModelSlot.from_graph(base, "v1", KEY)
    assert slot.install(blob)
    assert slot.version == "v2" and slot.previous[1] == "v1"
    assert slot.sha256 == sha256(graph_bytes(model))
    assert slot.rollback() and slot.version == "v1" and slot.graph is base


@pytest.mark.parametrize("damage", ["model bytes", "manifest", "signature", "wrong key", "truncated", "unsigned"])
def test_device_rejects_and_keeps_running_the_old_model(model, blob, damage):
    r = regions(blob)
    bad = {"model bytes": lambda: flip(blob, r["payload"][0] + 100),
           "manifest": lambda: flip(blob, r["manifest"][0] + 5),
           "signature": lambda: flip(blob, r["signature"][0] + 10),
           "wrong key": lambda: package_model(model, "v2", OTHER),
           "truncated": lambda: blob[: len(blob) // 2],
           "unsigned": lambda: blob[:-64]}[damage]()
    old = model.copy()
    slot = ModelSlot.from_graph(old, "v1", KEY)
    assert slot.install(bad) is False
    assert slot.graph is old and slot.version == "v1" and slot.previous is None
    assert slot.rejected == 1 and not slot.log[-1].installed and slot.log[-1].reason


def test_patch_applies_to_its_base_only(model):
    slot = ModelSlot.from_graph(model.copy(), "v1", KEY)
    target = model.copy()
    b = target.tensors["fc/bias"]
    b.data = (b.data + 3).astype(b.data.dtype)
    patch = package_patch({"fc/bias": b.data}, "v1+p1", "v1", slot.sha256, sha256(graph_bytes(target)), KEY,
                          model.name)
    assert len(patch) < len(package_model(model, "v1", KEY)) / 10
    # a device on another model rejects it and keeps running
    other = ModelSlot.from_graph(target.copy(), "v9", KEY)
    assert not other.install(patch) and "applies to v1" in other.log[-1].reason and other.version == "v9"
    assert slot.install(patch)
    np.testing.assert_array_equal(slot.graph.tensors["fc/bias"].data, b.data)
    # the device's patched model is, byte for byte, the model the cloud hashed
    assert sha256(graph_bytes(slot.graph)) == slot.sha256
    assert slot.previous[0].tensors["fc/bias"].data is not b.data


def test_patch_with_wrong_shape_is_rejected(model):
    slot = ModelSlot.from_graph(model.copy(), "v1", KEY)
    patch = package_patch({"fc/bias": np.zeros(3, np.int32)}, "p", "v1", slot.sha256, "0" * 64, KEY, model.name)
    assert not slot.install(patch) and "int32[3]" in slot.log[-1].reason
    patch = package_patch({"nope": np.zeros(3, np.int32)}, "p", "v1", slot.sha256, "0" * 64, KEY, model.name)
    assert not slot.install(patch) and "not a constant" in slot.log[-1].reason
    assert slot.version == "v1" and slot.rejected == 2


def test_package_for_another_model_is_rejected(model):
    slot = ModelSlot.from_graph(model.copy(), "v1", KEY)
    assert not slot.install(package_model(model, "v2", KEY, model="kws-dscnn"))
    assert "kws-dscnn" in slot.log[-1].reason
