"""Phone calls to a voice agent over Twilio Media Streams.

>>> from voice import create_app
>>> from adapters.twilio import mount_twilio
>>> app = create_app({"assistant": Assistant})
>>> mount_twilio(app, agent="assistant")   # TWILIO_AUTH_TOKEN and VOICE_PUBLIC_URL from the environment

Then point the number's "A call comes in" webhook at ``https://<public host>/twilio/voice`` (HTTP POST).
See adapters/twilio/README.md.
"""

from .output import TwilioOutput
from .routes import maybe_mount_twilio, mount_twilio, twiml
from .stream import StreamConfig, TwilioPeer, TwilioStream, serve_twilio_stream

__all__ = [
    "StreamConfig",
    "TwilioOutput",
    "TwilioPeer",
    "TwilioStream",
    "maybe_mount_twilio",
    "mount_twilio",
    "serve_twilio_stream",
    "twiml",
]
