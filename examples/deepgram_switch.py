"""Deepgram in production, chosen per connection: Flux by default, Nova-3 for `?model=nova-3`, Aura for speech.

    DEEPGRAM_API_KEY=... uvicorn examples.deepgram_switch:app
    # browser: new VoiceClient({agent: "assistant", query: {model: "nova-3"}})
"""

from voice import TurnContext, VoiceAgent, create_app
from voice.providers.deepgram import AuraTTS, FluxTranscriber, NovaTranscriber

flux = FluxTranscriber(eager_eot_threshold=0.5)  # eager end of turn: on_turn starts before the user is done
nova = NovaTranscriber(endpointing=300, utterance_end_ms=1000)


class Assistant(VoiceAgent):
    tts = AuraTTS(model="aura-2-thalia-en")

    def create_transcriber(self, call):
        return nova if call.query.get("model") == "nova-3" else flux

    async def on_turn(self, transcript: str, ctx: TurnContext):
        return f"You said: {transcript}"


app = create_app({"assistant": Assistant}, transcriber=flux)
