"""What the user heard: the playback clock estimate and the mapping from a heard position back to text."""

from voice.reply import HeardText, PlaybackClock


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_clock_plays_chunks_back_to_back_and_in_real_time():
    clock = Clock()
    pb = PlaybackClock(16000, clock)
    pb.on_write(16000)  # 1 s arrives at once
    pb.on_write(16000)
    clock.now += 0.5
    assert pb.played() == 8000
    clock.now += 1.0
    assert pb.played() == 24000
    clock.now += 5
    assert pb.played() == 32000
    pb.on_write(1600)  # a gap: the next chunk starts when it arrives
    clock.now += 0.05
    assert pb.played() == 32800


def test_clear_freezes_the_heard_position_and_skips_dropped_audio():
    clock = Clock()
    pb = PlaybackClock(16000, clock)
    pb.on_write(48000)
    clock.now += 1.0
    assert pb.clear() == 16000
    clock.now += 10
    assert pb.played() == 16000  # nothing more was heard of the dropped audio
    pb.on_write(16000)  # the next reply continues the timeline after the dropped part
    clock.now += 0.5
    assert pb.played() == 48000 + 8000
    assert pb.clear(heard=50000) == 50000  # a transport that knows better overrides the estimate


def test_heard_text_whole_and_partial_sentences():
    heard = HeardText()
    heard.add("One two three four.", 0, 1000)
    heard.add("Five six seven eight.", 1000, 2000)
    assert heard.heard(0) == ""
    assert heard.heard(1000) == "One two three four."
    assert heard.heard(1500) == "One two three four. Five six"
    assert heard.heard(5000) == "One two three four. Five six seven eight."


def test_a_sentence_still_being_written_is_judged_by_its_expected_length():
    heard = HeardText()
    seg = heard.begin("alpha beta gamma delta", 0, sample_rate=1000)  # expected 22 chars * 0.06 s = 1320
    seg.end = 330  # a quarter written so far, and all of it played
    assert heard.heard(330) == "alpha"  # not all four words just because all written audio was heard
    seg.end = 1200
    seg.complete = True
    assert heard.heard(1200) == "alpha beta gamma delta"


def test_a_paused_clock_holds_the_heard_position_and_plays_on_from_it():
    now = [0.0]
    clock = PlaybackClock(16_000, clock=lambda: now[0])
    clock.on_write(16_000)  # 1 s
    now[0] = 0.25
    clock.pause()
    assert clock.played() == 4000
    now[0] = 2.0
    clock.on_write(8000)  # written while paused: waits
    assert clock.played() == 4000
    clock.resume()
    now[0] = 2.5
    assert clock.played() == 12_000  # half a second after the resume: 0.25 + 0.5 s of audio
    now[0] = 10.0
    assert clock.played() == clock.written == 24_000


def test_a_clear_while_paused_drops_the_rest_at_the_paused_position():
    now = [0.0]
    clock = PlaybackClock(16_000, clock=lambda: now[0])
    clock.on_write(16_000)
    now[0] = 0.5
    clock.pause()
    now[0] = 3.0
    assert clock.clear() == 8000
    clock.on_write(1600)
    assert clock.played() == 8000
