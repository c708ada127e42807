"""G.711 μ-law ↔ 16-bit linear PCM with numpy, bit-exact with CPython's ``audioop.lin2ulaw``/``ulaw2lin``.

Both directions are table lookups: a 65,536-entry table for encoding (one byte per int16 value) and a 256-entry
table for decoding, built once at import from the algorithm of Sun's ``g711.c`` that ``audioop`` uses
(see shared/reference/PROTOCOLS.md §2). Note the arithmetic right shift before taking the magnitude: the textbook
16-bit formula differs from ``audioop`` on 381 negative inputs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SILENCE", "decode", "decode_array", "encode", "encode_array"]

#: μ-law code of digital silence (0xFF; 0x7F also decodes to 0)
SILENCE = 0xFF

_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)


def _build_encode_table() -> np.ndarray:
    """μ-law code for every int16 value, indexed by ``value + 32768``."""
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    v = pcm >> 2  # arithmetic shift to 14 bits (floor), as audioop does
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), 8159) + 33
    seg = np.searchsorted(_SEG_UEND, v, side="left")  # first segment with v <= its upper end
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((v >> (seg + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8)


def _build_decode_table() -> np.ndarray:
    """int16 value of every μ-law code."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype("<i2")


_ENCODE = _build_encode_table()
_DECODE = _build_decode_table()


def encode_array(pcm: np.ndarray) -> np.ndarray:
    """int16 samples → uint8 μ-law codes."""
    return _ENCODE[pcm.astype(np.int32, copy=False) + 32768]


def decode_array(codes: np.ndarray) -> np.ndarray:
    """uint8 μ-law codes → int16 samples (little-endian)."""
    return _DECODE[codes]


def encode(pcm: bytes) -> bytes:
    """16-bit little-endian mono PCM → μ-law bytes (one per sample). A trailing odd byte is ignored."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
    return encode_array(samples).tobytes()


def decode(mulaw: bytes) -> bytes:
    """μ-law bytes → 16-bit little-endian mono PCM."""
    return _DECODE[np.frombuffer(mulaw, dtype=np.uint8)].tobytes()
