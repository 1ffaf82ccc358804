import pytest

from neurolake.errors import PlanError
from neurolake.store import Plan, plan_parts


def test_hand_computed_plan():
    # shard = 100 rows, a part closes once it holds >= 150 frames.
    plan = plan_parts(
        [("a", 60), ("b", 70), ("c", 30), ("d", 250), ("e", 10)], rows_per_shard=100, part_rows=150, chunk_rows=50
    )
    got = [
        (u.part_id, u.row_start, u.row_stop, [(p.utterance_id, p.first_row, p.n_frames) for p in u.utterances])
        for u in plan.parts
    ]
    assert got == [
        # a+b+c = 160 >= 150 -> closes at 160, rounded up to 200
        ("p000000", 0, 200, [("a", 0, 60), ("b", 60, 70), ("c", 130, 30)]),
        # d alone is 250 >= 150 -> [200, 450) rounded to 500
        ("p000001", 200, 500, [("d", 200, 250)]),
        # e is the tail: [500, 510) rounded to 600
        ("p000002", 500, 600, [("e", 500, 10)]),
    ]
    assert plan.total_rows == 600
    assert plan.n_frames == 420
    assert plan.n_utterances == 5
    assert [u.rows_used for u in plan.parts] == [160, 250, 10]


def test_units_are_contiguous_shard_aligned_and_disjoint():
    import random

    rnd = random.Random(3)
    utts = [(f"u{i}", rnd.randint(1, 900)) for i in range(500)]
    plan = plan_parts(utts, rows_per_shard=128, part_rows=2000, chunk_rows=32)
    prev_stop = 0
    seen = []
    for u in plan.parts:
        assert u.row_start == prev_stop
        assert u.row_start % 128 == 0 and u.row_stop % 128 == 0
        assert u.used_stop <= u.row_stop < u.used_stop + 128
        cursor = u.row_start
        for p in u.utterances:
            assert p.first_row == cursor
            cursor += p.n_frames
            seen.append((p.utterance_id, p.n_frames))
        prev_stop = u.row_stop
    assert seen == utts


def test_plan_is_deterministic_and_round_trips():
    utts = [(f"x{i}", 10 + (i * 37) % 300) for i in range(200)]
    a = plan_parts(utts, rows_per_shard=64, part_rows=1000, chunk_rows=16)
    b = plan_parts(list(utts), rows_per_shard=64, part_rows=1000, chunk_rows=16)
    assert a == b
    assert Plan.from_dict(a.to_dict()) == a


@pytest.mark.parametrize(
    "utts, kwargs, message",
    [
        ([("a", 10), ("a", 5)], {}, "appears twice"),
        ([("a", 0)], {}, "at least one"),
        ([("a", 10)], {"rows_per_shard": 100, "chunk_rows": 30}, "must divide"),
        ([("a", 10)], {"rows_per_shard": 0}, "positive"),
    ],
)
def test_bad_plan_input(utts, kwargs, message):
    with pytest.raises(PlanError, match=message):
        plan_parts(utts, **kwargs)


def test_empty_plan():
    plan = plan_parts([])
    assert plan.parts == () and plan.total_rows == 0 and plan.n_frames == 0
