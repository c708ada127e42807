"""The turn-taking core without sockets, SQLite, an event loop or a clock: events in, actions out, table first.

Like the ``websockets`` library's ``tests/test_protocol.py``: every case feeds a sequence of events to a fresh
:class:`TurnTaking` and compares the actions it returns, and the state it is left in, with what a person expects.
"""

from __future__ import annotations

import pytest

from voice.engine.turn_events import (
    CallEnded,
    CallStarted,
    CancelSpeech,
    ClientInterrupt,
    DropReply,
    EarlyTranscript,
    FinalTranscript,
    FinishUtterance,
    InterimTranscript,
    Interrupt,
    PausePlayback,
    ReleaseReply,
    ReplyEnded,
    ReplyPhase,
    ResumePlayback,
    SpeakRequest,
    StartReply,
    StartSpeech,
    Tick,
    TypedMessage,
    UserIdle,
    UserResumed,
    UserSpeechStarted,
    UserSpeechStopped,
)
from voice.engine.turn_policy import TurnPolicy
from voice.engine.turn_taking import TurnTaking, same_words


def feed(tt: TurnTaking, *events) -> list:
    """Every action the events cause, in order."""
    actions: list = []
    for event in events:
        actions += tt.receive(event)
    return actions


FINAL = FinalTranscript("what time is it", speech_ended_at=10.0, at=10.5)
START_1 = StartReply(1, "what time is it", speech_ended_at=10.0, final_at=10.5)

# (name, events before, the event under test, actions it must cause, status after)
CASES = [
    ("speech with nobody replying does nothing", [], UserSpeechStarted(), [], "listening"),
    ("a final starts a reply", [], FINAL, [START_1], "thinking"),
    ("speech over a reply still thinking does not cut it", [FINAL], UserSpeechStarted(), [], "thinking"),
    ("speech over an audible reply pauses it", [FINAL, ReplyPhase(1, "speaking")], UserSpeechStarted(11.0),
     [PausePlayback(1)], "speaking"),
    ("a reply still playing out after it was all sent can be paused", [FINAL, ReplyPhase(1, "speaking"),
     ReplyPhase(1, "sent")], UserSpeechStarted(11.0), [PausePlayback(1)], "listening"),
    ("an early transcript starts a held reply", [], EarlyTranscript("what time is it", 10.0),
     [StartReply(1, "what time is it", held=True, speech_ended_at=10.0)], "listening"),
    ("the final with the same words releases the held reply", [EarlyTranscript("what time is it", 10.0)],
     FinalTranscript("What time is it?", 10.0, 10.5), [ReleaseReply(1, "What time is it?", 10.0, 10.5)], "thinking"),
    ("the final with other words drops the held reply and answers what was said",
     [EarlyTranscript("what time", 9.0)], FINAL,
     [DropReply(1), StartReply(2, "what time is it", speech_ended_at=10.0, final_at=10.5)], "thinking"),
    ("the user going on drops the held reply", [EarlyTranscript("what time", 9.0)], UserResumed(),
     [DropReply(1)], "listening"),
    ("a second early transcript replaces the first", [EarlyTranscript("what", 9.0)],
     EarlyTranscript("what time is it", 10.0),
     [DropReply(1), StartReply(2, "what time is it", held=True, speech_ended_at=10.0)], "listening"),
    ("a final dropped by a hook drops the held reply and starts nothing", [EarlyTranscript("um", 9.0)],
     FinalTranscript("", 9.0, 9.5), [DropReply(1)], "listening"),
    ("an empty early transcript holds nothing", [], EarlyTranscript("  ", 9.0), [], "listening"),
    ("a new final supersedes the reply in flight", [FINAL, ReplyPhase(1, "speaking")],
     FinalTranscript("and tomorrow", 20.0, 20.4),
     [Interrupt(1), StartReply(2, "and tomorrow", speech_ended_at=20.0, final_at=20.4)], "thinking"),
    ("a typed message supersedes the reply in flight", [FINAL], TypedMessage("never mind"),
     [Interrupt(1), StartReply(2, "never mind", source="text")], "thinking"),
    ("a blank typed message does nothing", [], TypedMessage("   "), [], "listening"),
    ("the client stopping playback itself cuts the reply without echoing it", [FINAL, ReplyPhase(1, "speaking")],
     ClientInterrupt(), [Interrupt(1, notify=False)], "listening"),
    ("a client interrupt with nothing playing does nothing", [], ClientInterrupt(), [], "listening"),
    ("speak with the floor free speaks at once (fixed text: nothing to think about)", [],
     SpeakRequest("Hello!", token=7), [StartSpeech(1, 7, "Hello!")], "listening"),
    ("speak waits for the reply in flight", [FINAL], SpeakRequest("Reminder", token=7), [], "thinking"),
    ("a finished reply hands the floor to the waiting speech", [FINAL, SpeakRequest("Reminder", token=7)],
     ReplyEnded(1), [StartSpeech(2, 7, "Reminder")], "listening"),
    ("a speech is speaking once its audio is out", [SpeakRequest("Hello!", token=7)], ReplyPhase(1, "speaking"),
     [], "speaking"),
    ("the end of a reply that lost the floor changes nothing", [FINAL, ReplyPhase(1, "speaking"),
     UserSpeechStarted(11.0), InterimTranscript("stop", 11.3)], ReplyEnded(1), [], "listening"),
    ("the end of the reply leaves the floor to the user", [FINAL], ReplyEnded(1), [], "listening"),
    ("the end of the call stops the reply and drops the held one", [FINAL, EarlyTranscript("and", 11.0)],
     CallEnded(), [DropReply(2), Interrupt(1, notify=False, hook=False)], "listening"),
    ("a speech that waited goes on after the call ended (as text)", [FINAL, SpeakRequest("Bye", token=3)],
     CallEnded(), [Interrupt(1, notify=False, hook=False), StartSpeech(2, 3, "Bye")], "listening"),
]


@pytest.mark.parametrize("name,before,event,expected,status", CASES, ids=[c[0] for c in CASES])
def test_decisions(name, before, event, expected, status):
    tt = TurnTaking()
    feed(tt, *before)
    assert tt.receive(event) == expected
    assert tt.status == status


# --- what the agent's author controls -----------------------------------------------------------------------------


def test_an_uninterruptible_speech_is_heard_whole_and_the_turn_spoken_over_it_answered_after():
    tt = TurnTaking()
    assert feed(tt, SpeakRequest("This call is recorded.", token=1, interruptible=False)) == [
        StartSpeech(1, 1, "This call is recorded.", interruptible=False)]
    feed(tt, ReplyPhase(1, "speaking"))
    assert not tt.can_barge_in()
    assert feed(tt, UserSpeechStarted()) == []  # talking over it does not cut it
    assert feed(tt, FINAL) == []  # what they said waits for the floor
    assert tt.status == "speaking"
    assert feed(tt, ReplyEnded(1)) == [StartReply(2, "what time is it", speech_ended_at=10.0, final_at=10.5)]


def test_an_agent_that_allows_no_interruptions_is_never_cut_by_speech_but_the_client_can_stop_it():
    tt = TurnTaking(allow_interruptions=False)
    feed(tt, FINAL, ReplyPhase(1, "speaking"))
    assert feed(tt, UserSpeechStarted()) == []
    assert feed(tt, ClientInterrupt()) == [Interrupt(1, notify=False)]


def test_a_held_reply_waiting_behind_a_firm_reply_is_dropped_not_released():
    tt = TurnTaking()
    feed(tt, SpeakRequest("Disclaimer.", token=1, interruptible=False), ReplyPhase(1, "speaking"))
    assert feed(tt, EarlyTranscript("hello there", 5.0)) == [StartReply(2, "hello there", held=True,
                                                                        speech_ended_at=5.0)]
    assert feed(tt, FinalTranscript("hello there", 5.0, 5.4)) == [DropReply(2)]
    assert feed(tt, ReplyEnded(1)) == [StartReply(3, "hello there", speech_ended_at=5.0, final_at=5.4)]


def test_closing_the_connection_cancels_every_waiting_speech():
    tt = TurnTaking()
    feed(tt, FINAL, SpeakRequest("a", token=1), SpeakRequest("b", token=2), EarlyTranscript("x", 1.0))
    assert tt.close() == [DropReply(2), Interrupt(1, notify=False, hook=False), CancelSpeech(1), CancelSpeech(2)]
    assert not tt.replying and tt.held is None


def test_reply_ids_are_never_reused():
    tt = TurnTaking()
    ids = []
    for i in range(5):
        actions = feed(tt, FinalTranscript(f"turn {i}", float(i), float(i)))
        ids.append(actions[-1].reply)
    assert ids == sorted(set(ids))


def test_unknown_events_are_refused():
    with pytest.raises(TypeError):
        TurnTaking().receive("speech")  # type: ignore[arg-type]


@pytest.mark.parametrize("a,b,same", [
    ("What time is it?", "what time is it", True),
    ("It's five.", "its five", False),
    ("Hello,  world", "hello world!", True),
    ("hello", "hello there", False),
])
def test_same_words_ignores_case_and_punctuation(a, b, same):
    assert same_words(a, b) is same


# --- barge-in: pause, then decide -----------------------------------------------------------------------------------

SPEAKING = [FINAL, ReplyPhase(1, "speaking")]  # reply 1 is audible
ON = 11.0  # the user starts talking over it

# (name, events after the pause, the actions they cause in order, whether the reply is still the agent's)
BARGE_IN = [
    ("words that are not an acknowledgement cut the reply", [InterimTranscript("stop", ON + 0.3)],
     [Interrupt(1)], False),
    ("an acknowledgement, finished, plays on", [UserSpeechStopped(ON + 0.3), EarlyTranscript("Mm-hmm.", ON + 0.3,
     ON + 0.45)], [ResumePlayback(1)], True),
    ("an acknowledgement as the final transcript plays on", [UserSpeechStopped(ON + 0.3),
     FinalTranscript("Okay.", ON + 0.3, ON + 0.5)], [ResumePlayback(1)], True),
    ("an acknowledgement in two words plays on", [FinalTranscript("oh, I see", ON + 0.4, ON + 0.6)],
     [ResumePlayback(1)], True),
    ("a filler is no decision yet", [InterimTranscript("um", ON + 0.3)], [], True),
    ("a sound without words plays on once it stopped", [UserSpeechStopped(ON + 0.15), Tick(ON + 0.6)],
     [ResumePlayback(1)], True),
    ("...not before the silence after it is long enough", [UserSpeechStopped(ON + 0.15), Tick(ON + 0.5)], [], True),
    ("speech that goes on takes the floor before any word is transcribed", [Tick(ON + 0.7)], [Interrupt(1)], False),
    ("what may start an acknowledgement is given a little longer", [InterimTranscript("sound", ON + 0.3),
     Tick(ON + 0.8)], [], True),
    ("...but it too must end", [InterimTranscript("sound", ON + 0.3), Tick(ON + 1.0)], [Interrupt(1)], False),
    ("an acknowledgement is given longer to finish", [InterimTranscript("yeah", ON + 0.3), Tick(ON + 0.7)], [],
     True),
    ("...but not for ever", [InterimTranscript("yeah", ON + 0.3), Tick(ON + 1.2)], [Interrupt(1)], False),
    ("acknowledging then asking cuts the reply", [InterimTranscript("yeah", ON + 0.3),
     InterimTranscript("yeah but what about tuesday", ON + 0.9)], [Interrupt(1)], False),
    ("a real question as the final cuts the reply and is answered", [FinalTranscript("what about tuesday?", ON + 0.8,
     ON + 1.0)], [Interrupt(1), StartReply(2, "what about tuesday?", speech_ended_at=ON + 0.8, final_at=ON + 1.0)],
     True),
]


@pytest.mark.parametrize("name,events,expected,keeps", BARGE_IN, ids=[c[0] for c in BARGE_IN])
def test_barge_in(name, events, expected, keeps):
    tt = TurnTaking()
    feed(tt, *SPEAKING)
    assert tt.receive(UserSpeechStarted(ON)) == [PausePlayback(1)]
    assert feed(tt, *events) == expected
    assert tt.replying is keeps
    if keeps and tt.floor.reply == 1:
        assert tt.barge_in is None or not any(isinstance(a, ResumePlayback) for a in expected)


def test_a_late_acknowledgement_after_playing_on_is_not_a_turn():
    tt = TurnTaking()
    feed(tt, *SPEAKING, UserSpeechStarted(ON), UserSpeechStopped(ON + 0.3))
    assert feed(tt, Tick(ON + 0.75)) == [ResumePlayback(1)]  # no word yet: a sound, play on
    assert feed(tt, FinalTranscript("Mm-hmm.", ON + 0.3, ON + 0.9)) == []  # then it turns out to be "mhm": not a turn
    assert tt.floor.reply == 1


def test_an_acknowledgement_while_the_agent_is_silent_is_a_turn():
    tt = TurnTaking()
    assert feed(tt, FinalTranscript("okay", 5.0, 5.2)) == [StartReply(1, "okay", speech_ended_at=5.0, final_at=5.2)]


def test_an_acknowledgement_while_the_agent_thinks_is_not_a_turn():
    tt = TurnTaking()
    feed(tt, FINAL)
    assert feed(tt, UserSpeechStarted(10.7), FinalTranscript("yeah", 10.9, 11.1)) == []
    assert tt.floor.reply == 1


def test_the_decision_deadline_is_announced():
    tt = TurnTaking()
    feed(tt, *SPEAKING)
    assert tt.deadline is None
    feed(tt, UserSpeechStarted(ON))
    assert tt.deadline == pytest.approx(ON + 0.7)
    feed(tt, UserSpeechStopped(ON + 0.2))
    assert tt.deadline == pytest.approx(ON + 0.6)  # resume_after 0.4 s after the stop
    feed(tt, Tick(ON + 0.6))
    assert tt.deadline is None


def test_the_client_interrupting_a_paused_reply_cuts_it():
    tt = TurnTaking()
    feed(tt, *SPEAKING, UserSpeechStarted(ON))
    assert feed(tt, ClientInterrupt()) == [Interrupt(1, notify=False)]
    assert tt.barge_in is None


# --- end of turn (the engine decides it) ----------------------------------------------------------------------------

def endpointing(**policy) -> TurnTaking:
    return TurnTaking(TurnPolicy(**policy), endpointing=True)


@pytest.mark.parametrize("complete,finish_at", [
    (0.9, 10.25),  # sounds complete: 250 ms of silence
    (None, 10.4),  # no opinion: the default 400 ms (longer than a 350 ms pause inside a clause)
    (0.5, 10.4),
    (0.3, 11.3),  # probably unfinished ("Where are you from?" / "...the weather in"): 1.3 s
    (0.1, 12.5),  # surely unfinished ("remind me to…"): wait up to 2.5 s for the rest
])
def test_the_silence_that_ends_a_turn_depends_on_how_complete_it_sounds(complete, finish_at):
    tt = endpointing()
    actions = feed(tt, EarlyTranscript("what time is it", 10.0, 10.15, complete))
    assert actions == [StartReply(1, "what time is it", held=True, speech_ended_at=10.0)]
    assert tt.deadline == pytest.approx(finish_at)
    assert feed(tt, Tick(finish_at - 0.01)) == []
    assert feed(tt, Tick(finish_at)) == [FinishUtterance()]


def test_a_late_early_transcript_finishes_the_turn_at_once():
    tt = endpointing()
    assert feed(tt, EarlyTranscript("what time is it", 10.0, 10.5, 0.9)) == [
        StartReply(1, "what time is it", held=True, speech_ended_at=10.0), FinishUtterance()]


def test_speech_resuming_cancels_the_end_of_turn():
    tt = endpointing()
    feed(tt, EarlyTranscript("can you remind me to", 10.0, 10.2, 0.1))
    assert feed(tt, UserResumed(10.8)) == [DropReply(1)]
    assert tt.deadline is None
    feed(tt, EarlyTranscript("can you remind me to call my mother", 12.0, 12.1, 0.9))
    assert feed(tt, Tick(12.25)) == [FinishUtterance()]


def test_without_engine_endpointing_the_stt_alone_ends_turns():
    tt = TurnTaking()
    feed(tt, EarlyTranscript("what time is it", 10.0, 10.15, 0.9))
    assert tt.deadline is None


# --- an idle user ---------------------------------------------------------------------------------------------------

def test_the_user_is_idle_after_the_set_silence_and_again_each_period():
    tt = TurnTaking(TurnPolicy(user_idle=8.0))
    feed(tt, CallStarted(0.0))
    assert tt.deadline == 8.0
    assert feed(tt, Tick(8.0)) == [UserIdle(8.0, 1)]
    assert feed(tt, Tick(16.0)) == [UserIdle(16.0, 2)]


def test_speaking_or_being_answered_restarts_the_idle_clock():
    tt = TurnTaking(TurnPolicy(user_idle=8.0))
    feed(tt, CallStarted(0.0), UserSpeechStarted(5.0), FinalTranscript("hello", 6.0, 6.2))
    assert tt.deadline is None  # the agent has the floor
    feed(tt, ReplyEnded(1, 9.0))
    assert tt.deadline == 17.0


def test_no_idle_outside_a_call_or_when_switched_off():
    tt = TurnTaking(TurnPolicy(user_idle=8.0))
    assert feed(tt, Tick(100.0)) == []
    tt = TurnTaking()
    feed(tt, CallStarted(0.0))
    assert tt.deadline is None


# --- what counts as an acknowledgement ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,kind", [
    ("Mm-hmm.", "backchannel"), ("Uh-huh", "backchannel"), ("okay okay", "backchannel"), ("Oh, okay.", "backchannel"),
    ("Yeah.", "backchannel"), ("Right, right.", "backchannel"), ("I see", "backchannel"), ("Got it!", "backchannel"),
    ("um", "none"), ("", "none"), ("...", "none"),
    ("Stop!", "words"), ("wait", "words"), ("okay but what about tomorrow", "words"), ("no", "words"),
    ("I see a problem", "words"), ("hold on", "words"),
])
def test_classify(text, kind):
    assert TurnPolicy().classify(text) == kind


def test_the_acknowledgements_follow_the_call_language_or_the_setting():
    from voice.config import Settings

    assert TurnPolicy.from_settings(Settings(), "de").classify("Ja, genau.") == "backchannel"
    assert TurnPolicy.from_settings(Settings(), "en").classify("Ja, genau.") == "words"
    assert TurnPolicy.from_settings(Settings(backchannels=("roger",)), "en").classify("Roger.") == "backchannel"
