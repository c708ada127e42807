"""Speech-to-text and text-to-speech providers: the contracts (:mod:`.base`), the factory by name, Deepgram."""
