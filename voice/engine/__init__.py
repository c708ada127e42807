"""Where a turn is decided: one call's lifecycle (:mod:`.call`), its speech input (:mod:`.speech_input`), the pure
turn-taking core (:mod:`.turn_taking`), the replies it runs (:mod:`.floor`), and the runtime of agent instances
(:mod:`.runtime`). Transports feed the engine; the engine never touches a socket."""

from .call import Call, Peer
from .call_state import TRANSITIONS, CallState
from .runtime import Runtime, kebab_case
from .turn_taking import TurnTaking

__all__ = ["TRANSITIONS", "Call", "CallState", "Peer", "Runtime", "TurnTaking", "kebab_case"]
