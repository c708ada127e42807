"""libopus, called directly: the WebRTC transport's encoder for the agent's voice and decoder for the caller's.

aiortc encodes every outgoing 20 ms frame as 96 kbps stereo (upmixing our mono) through PyAV, in a worker thread,
silence included, and decodes incoming audio to 48 kHz stereo in another thread. Calling libopus ourselves lets
the transport encode mono at a voice bitrate and decode straight to 16 kHz mono, on the event loop, with no
thread hop per frame.

The library is the copy PyAV's wheels bundle (``av.libs/libopus-*.so*`` on Linux, ``av/.dylibs`` on macOS,
``av.libs/*opus*.dll`` on Windows) — aiortc already depends on PyAV — or else a system ``libopus`` that ctypes can
find. :func:`libopus` returns None when there is neither; the transport then keeps aiortc's own codec path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import logging
import os

log = logging.getLogger("voice.webrtc")

APPLICATION = {"voip": 2048, "audio": 2049, "lowdelay": 2051}
_SET_BITRATE = 4002
_GET_BITRATE = 4003
_SET_COMPLEXITY = 4010
_SET_MAX_BANDWIDTH = 4004
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_FULLBAND = 1105
_BANDWIDTHS = ((8_000, 1101), (12_000, 1102), (16_000, 1103), (24_000, 1104))  # NB, MB, WB, SWB
_OK = 0
MAX_PACKET = 1500  # bytes: an RTP payload never exceeds the MTU
MAX_FRAME_MS = 120  # the longest Opus packet


class OpusError(RuntimeError):
    """libopus returned an error code (bad packet, bad argument)."""


def _candidates() -> list[str]:
    """Where PyAV's wheels put their bundled libopus, then the system's."""
    paths: list[str] = []
    spec = importlib.util.find_spec("av")
    if spec is not None and spec.origin:
        package = os.path.dirname(spec.origin)
        for folder, pattern in (
            (os.path.join(os.path.dirname(package), "av.libs"), "*opus*"),  # auditwheel, delvewheel
            (os.path.join(package, ".dylibs"), "libopus*.dylib"),  # delocate
        ):
            paths += sorted(glob.glob(os.path.join(folder, pattern)))
    system = ctypes.util.find_library("opus")
    if system:
        paths.append(system)
    return paths


@functools.lru_cache(maxsize=1)
def libopus() -> ctypes.CDLL | None:
    """The loaded libopus with its signatures declared, or None when none can be found."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.opus_get_version_string.restype = ctypes.c_char_p
        except (OSError, AttributeError):
            continue
        _declare(lib)
        log.debug("using %s (%s)", path, lib.opus_get_version_string().decode())
        return lib
    return None


def version() -> str | None:
    """libopus' version string ("libopus 1.5.2"), or None without the library."""
    lib = libopus()
    return lib.opus_get_version_string().decode() if lib is not None else None


def _declare(lib: ctypes.CDLL) -> None:
    pointer, c_int, int32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int32
    error = ctypes.POINTER(c_int)
    lib.opus_encoder_create.restype = pointer
    lib.opus_encoder_create.argtypes = [int32, c_int, c_int, error]
    lib.opus_encoder_destroy.argtypes = [pointer]
    lib.opus_encode.restype = int32
    lib.opus_encode.argtypes = [pointer, ctypes.c_char_p, c_int, ctypes.c_char_p, int32]
    # opus_encoder_ctl is variadic: only the fixed arguments are declared, so ctypes passes the value as a
    # variadic argument (which matters on arm64 macOS)
    lib.opus_encoder_ctl.restype = c_int
    lib.opus_encoder_ctl.argtypes = [pointer, c_int]
    lib.opus_decoder_create.restype = pointer
    lib.opus_decoder_create.argtypes = [int32, c_int, error]
    lib.opus_decoder_destroy.argtypes = [pointer]
    lib.opus_decode.restype = c_int
    lib.opus_decode.argtypes = [pointer, ctypes.c_char_p, int32, ctypes.c_char_p, c_int, c_int]
    lib.opus_strerror.restype = ctypes.c_char_p
    lib.opus_strerror.argtypes = [c_int]


def _check(lib: ctypes.CDLL, code: int, what: str) -> int:
    if code < 0:
        raise OpusError(f"{what}: {lib.opus_strerror(code).decode()}")
    return code


def _require() -> ctypes.CDLL:
    lib = libopus()
    if lib is None:
        raise OpusError("libopus not found (neither bundled with PyAV nor on the system)")
    return lib


class OpusEncoder:
    """One Opus encoder: frames of int16 PCM at ``rate`` in, one Opus packet out per frame.

    ``application`` is libopus' ("voip", "audio", "lowdelay"); ``complexity`` 0-10 trades CPU for quality.
    """

    def __init__(
        self,
        rate: int = 48_000,
        channels: int = 1,
        bitrate: int = 32_000,
        complexity: int = 5,
        application: str = "audio",
    ) -> None:
        self._lib = lib = _require()
        self.rate = rate
        self.channels = channels
        error = ctypes.c_int()
        self._state = lib.opus_encoder_create(rate, channels, APPLICATION[application], ctypes.byref(error))
        _check(lib, error.value, "opus_encoder_create")
        self._ctl(_SET_BITRATE, bitrate)
        self._ctl(_SET_COMPLEXITY, complexity)
        self._out = ctypes.create_string_buffer(MAX_PACKET)

    def _ctl(self, request: int, value: int) -> None:
        _check(self._lib, self._lib.opus_encoder_ctl(self._state, request, ctypes.c_int32(value)), "opus_encoder_ctl")

    def limit_bandwidth(self, max_playback_rate: int) -> None:
        """Encode no more audio bandwidth than a listener playing at ``max_playback_rate`` Hz can use (the
        ``maxplaybackrate`` of RFC 7587, as browsers apply it): 8000 → narrowband ... 16000 → wideband."""
        for rate, bandwidth in _BANDWIDTHS:
            if max_playback_rate <= rate:
                self._ctl(_SET_MAX_BANDWIDTH, bandwidth)
                return
        self._ctl(_SET_MAX_BANDWIDTH, _FULLBAND)

    def use_fec(self, expected_loss_percent: int) -> None:
        """Add in-band forward error correction sized for ``expected_loss_percent`` packet loss (SILK and hybrid
        modes; what a browser does once its peer reports loss): a lost packet is rebuilt from the next one."""
        self._ctl(_SET_INBAND_FEC, 1)
        self._ctl(_SET_PACKET_LOSS_PERC, expected_loss_percent)

    @property
    def bitrate(self) -> int:
        """The target bitrate the encoder reports (bits per second)."""
        value = ctypes.c_int32()
        _check(self._lib, self._lib.opus_encoder_ctl(self._state, _GET_BITRATE, ctypes.byref(value)),
               "opus_encoder_ctl")
        return value.value

    def encode(self, pcm: bytes) -> bytes:
        """One frame of 2.5, 5, 10, 20, 40 or 60 ms (int16, interleaved) → one Opus packet."""
        samples = len(pcm) // (2 * self.channels)
        if samples * 2 * self.channels != len(pcm) or samples * 400 % self.rate or samples * 1000 > self.rate * 60:
            raise ValueError(f"{len(pcm)} bytes of PCM are not an Opus frame (2.5 to 60 ms)")
        n = self._lib.opus_encode(self._state, pcm, samples, self._out, MAX_PACKET)
        return ctypes.string_at(self._out, _check(self._lib, n, "opus_encode"))

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.opus_encoder_destroy(state)


class OpusDecoder:
    """One Opus decoder straight to int16 PCM at ``rate`` (8, 12, 16, 24 or 48 kHz) with ``channels`` channels:
    libopus resamples and mixes down inside the codec, whatever the sender encoded."""

    def __init__(self, rate: int = 16_000, channels: int = 1) -> None:
        self._lib = lib = _require()
        self.rate = rate
        self.channels = channels
        self._max_samples = rate * MAX_FRAME_MS // 1000
        error = ctypes.c_int()
        self._state = lib.opus_decoder_create(rate, channels, ctypes.byref(error))
        _check(lib, error.value, "opus_decoder_create")
        self._pcm = ctypes.create_string_buffer(self._max_samples * 2 * channels)

    def decode(self, packet: bytes) -> bytes:
        """One Opus packet → its PCM (int16, interleaved). Raises OpusError for a corrupt packet."""
        n = self._lib.opus_decode(self._state, packet, len(packet), self._pcm, self._max_samples, 0)
        return ctypes.string_at(self._pcm, _check(self._lib, n, "opus_decode") * 2 * self.channels)

    def recover(self, next_packet: bytes, samples: int) -> bytes:
        """About ``samples`` samples (per channel, rounded down to 2.5 ms) lost just before ``next_packet``, rebuilt
        from the in-band forward error correction ``next_packet`` carries when its sender added some (browsers do
        once the receiver reports loss); libopus conceals what the FEC does not cover."""
        step = self.rate // 400
        samples -= samples % step
        if samples <= 0:
            return b""
        head = b""
        if samples > self._max_samples:  # only the last packet's worth can come from FEC
            head = self.conceal(samples - self._max_samples)
            samples = self._max_samples
        n = self._lib.opus_decode(self._state, next_packet, len(next_packet), self._pcm, samples, 1)
        return head + ctypes.string_at(self._pcm, _check(self._lib, n, "opus_decode") * 2 * self.channels)

    def conceal(self, samples: int) -> bytes:
        """About ``samples`` samples (per channel, rounded down to 2.5 ms) standing in for lost packets: libopus's
        packet-loss concealment, which also lets the next packet's decode carry on smoothly."""
        step = self.rate // 400  # 2.5 ms, the unit libopus conceals in
        out = []
        samples -= samples % step
        while samples > 0:
            n = min(samples, self._max_samples)
            got = _check(self._lib, self._lib.opus_decode(self._state, None, 0, self._pcm, n, 0), "opus_decode")
            out.append(ctypes.string_at(self._pcm, got * 2 * self.channels))
            samples -= n
        return b"".join(out)

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.opus_decoder_destroy(state)
