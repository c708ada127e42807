"""Table-driven tests of the sentence chunker: each case is checked fed whole, and fed one character at a time."""

import pytest

from voice.reply import ChunkerConfig, SentenceChunker

# Small minimums so the cases exercise boundaries, not merging (merging has its own cases below).
CFG = ChunkerConfig(min_chars=1, first_min_chars=1, max_chars=400, first_max_chars=400, first_clause_chars=0)

CASES = [
    ("Hello there. How are you?", ["Hello there.", "How are you?"]),
    ("Wait! Really? Yes.", ["Wait!", "Really?", "Yes."]),
    ("Pi is 3.14 today. Next.", ["Pi is 3.14 today.", "Next."]),
    ("It costs $4.99. Buy it.", ["It costs $4.99.", "Buy it."]),
    ("Meet at 3:45 p.m. tomorrow. OK.", ["Meet at 3:45 p.m. tomorrow.", "OK."]),
    ("Dr. Smith is in. Go.", ["Dr. Smith is in.", "Go."]),
    ("Mr. and Mrs. Jones left. Bye.", ["Mr. and Mrs. Jones left.", "Bye."]),
    ("Fruit, e.g. apples, is good. Yes.", ["Fruit, e.g. apples, is good.", "Yes."]),
    ("Use one, i.e. the red one. Fine.", ["Use one, i.e. the red one.", "Fine."]),
    ("He lives in the U.S. now. Ok.", ["He lives in the U.S. now.", "Ok."]),
    ("Apples, pears, etc. are fruit. Yes.", ["Apples, pears, etc. are fruit.", "Yes."]),
    ("I like apples, pears, etc. Then I sleep.", ["I like apples, pears, etc.", "Then I sleep."]),
    ("Visit https://example.com/a.b?x=1. Then call.", ["Visit https://example.com/a.b?x=1.", "Then call."]),
    ("Go to www.example.org today. Now.", ["Go to www.example.org today.", "Now."]),
    ("Mail jane.doe@example.co.uk please. Thanks.", ["Mail jane.doe@example.co.uk please.", "Thanks."]),
    ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
    ("She asked (why?) and left. Ok.", ["She asked (why?) and left.", "Ok."]),
    ("It works (mostly.) Next one.", ["It works (mostly.)", "Next one."]),
    ("Really?! Yes.", ["Really?!", "Yes."]),
    ("Well... I think so. Sure.", ["Well...", "I think so.", "Sure."]),
    ("Hmm… maybe. Yes.", ["Hmm…", "maybe.", "Yes."]),
    ("First line\nSecond line", ["First line", "Second line"]),
    ("Steps:\n1. Open it\n2. Close it", ["Steps:", "1. Open it", "2. Close it"]),
    ("- milk\n- eggs\n- bread", ["- milk", "- eggs", "- bread"]),
    ("* one\n* two", ["* one", "* two"]),
    ("J. K. Rowling wrote it. Yes.", ["J. K. Rowling wrote it.", "Yes."]),
    ("Version 2.0.1 is out. Update.", ["Version 2.0.1 is out.", "Update."]),
    ("I have 3. You have 4.", ["I have 3.", "You have 4."]),
    ("The ratio is 1.5x. Good.", ["The ratio is 1.5x.", "Good."]),
    ("Prof. Lee and St. John met. End.", ["Prof. Lee and St. John met.", "End."]),
    ("It was approx. ten miles. Far.", ["It was approx. ten miles.", "Far."]),
    ("see fig. 3 for details. Ok.", ["see fig. 3 for details.", "Ok."]),
    ("lowercase after period. then more", ["lowercase after period. then more"]),
    ("No terminator at all", ["No terminator at all"]),
    ("Ends with space. ", ["Ends with space."]),
    ("Trailing newline.\n", ["Trailing newline."]),
    ("Blank lines\n\n\nbetween", ["Blank lines", "between"]),
    ("At 10 a.m. We met.", ["At 10 a.m.", "We met."]),
    ("NASA is cool. N.A.S.A. Is it?", ["NASA is cool.", "N.A.S.A.", "Is it?"]),
    ("Price: 1,000.50 dollars. Ok.", ["Price: 1,000.50 dollars.", "Ok."]),
    ("Wow!\nNew line.", ["Wow!", "New line."]),
    ("'Quoted.' Next.", ["'Quoted.'", "Next."]),
    ("Call 555.123.4567 now. Bye.", ["Call 555.123.4567 now.", "Bye."]),
    ("Is it 5? Yes, it is.", ["Is it 5?", "Yes, it is."]),
]


def run(text: str, config: ChunkerConfig, piecewise: bool) -> list[str]:
    chunker = SentenceChunker(config)
    out: list[str] = []
    for piece in (list(text) if piecewise else [text]):
        out += chunker.push(piece)
    return out + chunker.flush()


@pytest.mark.parametrize("piecewise", [False, True], ids=["whole", "char-by-char"])
@pytest.mark.parametrize("text,expected", CASES, ids=[c[0][:30] for c in CASES])
def test_boundaries(text, expected, piecewise):
    assert run(text, CFG, piecewise) == expected


def test_at_least_forty_cases():
    assert len(CASES) >= 40


def test_short_fragments_merge_with_the_next_sentence():
    cfg = ChunkerConfig(min_chars=20, first_min_chars=20, first_clause_chars=0)
    assert run("Hi. Ok. This is a longer sentence. Fine.", cfg, False) == [
        "Hi. Ok. This is a longer sentence.",
        "Fine.",
    ]


def test_first_chunk_may_be_shorter_than_the_rest():
    cfg = ChunkerConfig(min_chars=30, first_min_chars=5, first_clause_chars=0)
    assert run("Sure. Let me check that. It takes a moment to do.", cfg, True) == [
        "Sure.",
        "Let me check that. It takes a moment to do.",
    ]


def test_run_on_sentence_is_split_at_a_comma_past_the_maximum():
    cfg = ChunkerConfig(min_chars=5, first_min_chars=5, max_chars=60, first_max_chars=60, first_clause_chars=0)
    text = "this goes on and on without stopping, and it keeps going with more words, and more words still"
    chunks = run(text, cfg, True)
    assert len(chunks) >= 2
    assert all(len(c) <= 60 for c in chunks)
    assert chunks[0].endswith(",")
    assert " ".join(chunks) == text


def test_run_on_without_commas_splits_at_a_space():
    cfg = ChunkerConfig(min_chars=5, first_min_chars=5, max_chars=40, first_max_chars=40, first_clause_chars=0)
    text = "word " * 30
    chunks = run(text, cfg, False)
    assert all(len(c) <= 40 for c in chunks)
    assert all(c.split() and all(w == "word" for w in c.split()) for c in chunks)


def test_first_chunk_splits_early_at_a_comma_for_faster_audio():
    cfg = ChunkerConfig(min_chars=10, first_min_chars=5, max_chars=300, first_max_chars=40, first_clause_chars=0)
    text = "Well, considering all that you said, I think the answer is yes, probably. Then more."
    chunks = run(text, cfg, True)
    assert len(chunks[0]) <= 40
    assert chunks[0].endswith(",")


def test_no_text_is_lost_or_reordered():
    text = "A. B? C! Dr. X said 3.14. e.g. this\n- item\nend"
    chunks = run(text, ChunkerConfig(), True)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "").replace("\n", "")


def test_a_pause_in_the_stream_releases_a_finished_sentence_but_not_a_half_one():
    chunker = SentenceChunker(CFG)
    assert chunker.push("This is done. ") == []  # undecided: the next word could be lowercase
    assert chunker.stall() == ["This is done."]
    assert chunker.push("And this is hal") == []
    assert chunker.stall() == []
    assert chunker.push("f done. Next") == ["And this is half done."]
    assert chunker.flush() == ["Next"]


def test_the_first_chunk_ends_at_an_early_clause_break_to_start_audio_sooner():
    cfg = ChunkerConfig()  # the defaults
    assert run("You said: what is the weather like today", cfg, True) == [
        "You said:",
        "what is the weather like today",
    ]
    assert run("Sure, I can do that. It will take a minute or two to finish.", cfg, True) == [
        "Sure, I can do that.",  # "Sure," is too short to stand alone
        "It will take a minute or two to finish.",
    ]
    assert run("At 3:45 we meet, ok.", cfg, False) == ["At 3:45 we meet,", "ok."]
    assert run("It costs 1,000 dollars. Fine.", cfg, False)[0] == "It costs 1,000 dollars."


def test_chinese_and_japanese_sentences_end_at_their_full_stops():
    text = "今日はとても良い天気ですね。明日の天気はどうでしょうか？雨が降るそうです！"
    whole = SentenceChunker(ChunkerConfig(min_chars=4))
    chunks = whole.push(text) + whole.flush()
    assert chunks == ["今日はとても良い天気ですね。", "明日の天気はどうでしょうか？", "雨が降るそうです！"]
    streamed = SentenceChunker(ChunkerConfig(min_chars=4))
    pieces = [c for ch in text for c in streamed.push(ch)] + streamed.flush()
    assert pieces == chunks


def test_cjk_text_without_full_stops_stays_whole_up_to_the_limit_then_splits_at_a_comma():
    text = "我们明天去公园散步，然后去图书馆看书" * 8  # 144 characters, no full stop, no space
    chunker = SentenceChunker(ChunkerConfig(max_chars=100, first_max_chars=100))
    chunks = chunker.push(text) + chunker.flush()
    assert "".join(chunks) == text
    assert all(len(c) <= 100 for c in chunks) and chunks[0].endswith("，")
    short = SentenceChunker()
    assert short.push("我们明天去公园散步，然后去图书馆看书") + short.flush() == ["我们明天去公园散步，然后去图书馆看书"]
