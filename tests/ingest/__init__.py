def assert_words_follow_timings(engine, run_id: str, corpus_dir, skip: tuple[str, ...] = ()) -> int:
    """Every frame of ``run_id`` (but ``skip``'s utterances) has as its word the synthetic corpus's
    timed word covering the frame's centre, or none; returns the number of frames with a word."""
    from pathlib import Path

    from neurolake.corpora import read_alignments
    from neurolake.labels.frames import normalise_transcript

    timings = {}
    for sidecar in Path(corpus_dir).rglob("*.phones.jsonl"):
        timings.update(read_alignments(str(sidecar)))
    frames = engine.sql(
        "SELECT f.utterance_id, f.start_s, f.end_s, f.word, f.word_index, u.reference FROM frames f "
        "JOIN utterances u USING (run_id, utterance_id) WHERE f.run_id = ?",
        [run_id],
    ).to_pylist()
    with_word = 0
    for f in frames:
        if f["utterance_id"] in skip:
            continue
        centre = (f["start_s"] + f["end_s"]) / 2
        covering = [w for w in timings[f["utterance_id"]].words if w.start_s <= centre < w.end_s]
        expected = normalise_transcript(covering[0].label) if covering else None
        assert f["word"] == expected, (f, expected)
        if expected is not None:
            assert f["reference"].split()[f["word_index"]] == expected
            with_word += 1
    return with_word
