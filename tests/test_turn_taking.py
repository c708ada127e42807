"""The turn-taking core without sockets, SQLite, an event loop or a clock: events in, actions out, table first.

Like the ``websockets`` library's ``tests/test_protocol.py``: every case feeds a sequence of events to a fresh
:class:`TurnTaking` and compares the actions it returns, and the state it is left in, with what a person expects.
"""

from __future__ import annotations

import pytest

from voice.engine.turn_taking import (
    CallEnded,
    CancelSpeech,
    ClientInterrupt,
    DropReply,
    EarlyTranscript,
    FinalTranscript,
    Interrupt,
    ReleaseReply,
    ReplyEnded,
    ReplyPhase,
    SpeakRequest,
    StartReply,
    StartSpeech,
    TurnTaking,
    TypedMessage,
    UserResumed,
    UserSpeechStarted,
    same_words,
)


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
    ("speech over an audible reply cuts it", [FINAL, ReplyPhase(1, "speaking")], UserSpeechStarted(),
     [Interrupt(1)], "listening"),
    ("a reply still playing out after it was all sent can be cut", [FINAL, ReplyPhase(1, "speaking"),
     ReplyPhase(1, "sent")], UserSpeechStarted(), [Interrupt(1)], "listening"),
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
     UserSpeechStarted()], ReplyEnded(1), [], "listening"),
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
