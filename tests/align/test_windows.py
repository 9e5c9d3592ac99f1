"""Window planning over long piece sequences, and batch packing (pure, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_hf_tagger.align.windows import (
    Window,
    kept_positions,
    make_windows,
    plan_batches,
    plan_windows,
    segment_windows,
)

# --- plan_windows: exact rows --------------------------------------------------------


def test_plan_empty():
    rows = plan_windows(0, 10, 2)
    assert rows.shape == (0, 4)
    assert rows.dtype == np.int64


@pytest.mark.parametrize("n", [1, 5, 10])
def test_plan_fits_in_one_window(n):
    assert plan_windows(n, 10, 2).tolist() == [[0, n, 0, n]]


def test_plan_one_more_than_content():
    # two windows [0, 10) and [1, 11); the overlap 1..9 is cut in the middle
    assert plan_windows(11, 10, 2).tolist() == [[0, 10, 0, 6], [1, 11, 6, 11]]


def test_plan_long_with_stride():
    assert plan_windows(25, 10, 4).tolist() == [
        [0, 10, 0, 8],
        [6, 16, 8, 14],
        [12, 22, 14, 19],
        [15, 25, 19, 25],
    ]


def test_plan_zero_stride():
    assert plan_windows(20, 10, 0).tolist() == [[0, 10, 0, 10], [10, 20, 10, 20]]
    # the last window is pulled back to end at the text end, so it overlaps
    assert plan_windows(21, 10, 0).tolist() == [
        [0, 10, 0, 10],
        [10, 20, 10, 16],
        [11, 21, 16, 21],
    ]


def test_plan_content_one():
    assert plan_windows(3, 1, 0).tolist() == [[0, 1, 0, 1], [1, 2, 1, 2], [2, 3, 2, 3]]


@pytest.mark.parametrize("stride", [10, 11, -1])
def test_plan_bad_stride_raises(stride):
    with pytest.raises(ValueError, match="stride"):
        plan_windows(50, 10, stride)


@pytest.mark.parametrize("content", [0, -3])
def test_plan_bad_content_raises(content):
    with pytest.raises(ValueError, match="content_length"):
        plan_windows(50, content, 0)


# --- plan_windows: invariants --------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 400),
    content=st.integers(1, 64),
    stride_fraction=st.floats(0, 1, exclude_max=True),
)
def test_plan_invariants(n, content, stride_fraction):
    stride = int(stride_fraction * content)
    assert 0 <= stride < content
    rows = plan_windows(n, content, stride)
    if n == 0:
        assert rows.shape == (0, 4)
        return
    starts, ends, keep_starts, keep_ends = rows.T.tolist()
    # kept ranges tile [0, n) exactly, in order, none empty
    assert keep_starts[0] == 0
    assert keep_ends[-1] == n
    assert keep_starts[1:] == keep_ends[:-1]
    assert all(ks < ke for ks, ke in zip(keep_starts, keep_ends))
    # windows are inside the text, at most `content` long, strictly increasing
    assert all(0 <= s < e <= n for s, e in zip(starts, ends))
    assert all(e - s <= content for s, e in zip(starts, ends))
    assert all(e - s == min(n, content) for s, e in zip(starts, ends))
    assert starts == sorted(set(starts))
    assert starts[0] == 0
    assert ends[-1] == n
    # consecutive windows overlap by at least `stride` pieces
    assert all(ends[i] - starts[i + 1] >= stride for i in range(len(starts) - 1))
    # the kept part lies inside the window, with at least ceil(stride / 2) pieces of
    # context on the left and floor(stride / 2) on the right (the middle of an overlap
    # of `stride` pieces), unless the text itself ends first
    for s, e, ks, ke in zip(starts, ends, keep_starts, keep_ends):
        assert s <= ks < ke <= e
        for p in (ks, ke - 1):
            assert p - s >= min((stride + 1) // 2, p)
            assert e - 1 - p >= min(stride // 2, n - 1 - p)
    # no more windows than needed
    if n > content:
        step = content - stride
        assert len(starts) == -(-(n - content) // step) + 1


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 200), content=st.integers(2, 40), stride_fraction=st.floats(0, 0.99))
def test_plan_each_piece_kept_where_it_has_most_context(n, content, stride_fraction):
    """Among the windows that contain a piece, the one that keeps it maximises
    min(left context, right context), counting the text ends as unlimited context."""
    stride = int(stride_fraction * content)
    rows = plan_windows(n, content, stride).tolist()

    def context(p, s, e):
        left = p - s if s > 0 else n
        right = e - 1 - p if e < n else n
        return min(left, right)

    for s, e, ks, ke in rows:
        for p in range(ks, ke):
            best = max(context(p, s2, e2) for s2, e2, _, _ in rows if s2 <= p < e2)
            assert context(p, s, e) == best


# --- make_windows --------------------------------------------------------------------


def test_make_windows():
    windows = make_windows([3, 0, 12], 10, 4)
    assert windows == [
        Window(0, 0, 3, 0, 3),
        Window(2, 0, 10, 0, 6),
        Window(2, 2, 12, 6, 12),
    ]
    assert [w.length for w in windows] == [3, 10, 10]
    assert make_windows([], 10, 4) == []


# --- plan_batches --------------------------------------------------------------------


def test_pack_by_batch_size_longest_first():
    assert list(plan_batches([3, 10, 7, 10, 1], 2, 100)) == [[1, 3], [2, 0], [4]]


def test_pack_by_budget():
    assert list(plan_batches([3, 10, 7, 10, 1], 2, 15)) == [[1], [3], [2, 0], [4]]
    # padded size is rows × longest row: 3 rows of 5 fit 15, a fourth does not
    assert list(plan_batches([5, 5, 5, 5, 1], 10, 15)) == [[0, 1, 2], [3, 4]]


def test_pack_oversize_window_alone():
    assert list(plan_batches([50, 2, 60], 8, 10)) == [[2], [0], [1]]


def test_pack_zero_length_counts_as_one():
    assert list(plan_batches([0, 0, 0], 8, 2)) == [[0, 1], [2]]


def test_pack_empty():
    assert list(plan_batches([], 4, 100)) == []


def test_pack_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        list(plan_batches([1, 2], 0, 100))


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 64), max_size=40),
    batch_size=st.integers(1, 9),
    budget=st.integers(1, 300),
)
def test_pack_invariants(lengths, batch_size, budget):
    batches = list(plan_batches(lengths, batch_size, budget))
    flat = [i for batch in batches for i in batch]
    # every index exactly once
    assert sorted(flat) == list(range(len(lengths)))
    # longest first overall, stable among equal lengths
    assert flat == sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        padded = len(batch) * max(max(lengths[i] for i in batch), 1)
        assert padded <= budget or len(batch) == 1
    # greedy: a batch is only closed when the next window would not fit
    for batch in batches[:-1]:
        longest = max(max(lengths[i] for i in batch), 1)
        assert len(batch) == batch_size or (len(batch) + 1) * longest > budget


def _brute_force_cost(lengths, batch_size, budget, overhead):
    """Least cost over every way to cut the longest-first order into batches."""
    sizes = sorted((max(x, 1) for x in lengths), reverse=True)
    best = {0: 0}
    for j in range(1, len(sizes) + 1):
        options = [
            best[i] + (j - i) * sizes[i] + overhead
            for i in range(j)
            if j - i <= batch_size and (j - i == 1 or (j - i) * sizes[i] <= budget)
        ]
        best[j] = min(options)
    return best[len(sizes)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 60), max_size=9),
    st.integers(1, 5),
    st.integers(1, 120),
    st.integers(1, 40),
)
def test_least_padding_split_is_optimal_and_within_limits(lengths, batch_size, budget, overhead):
    batches = list(plan_batches(lengths, batch_size, budget, overhead))
    flat = [i for b in batches for i in b]
    assert flat == sorted(range(len(lengths)), key=lambda i: -lengths[i])
    cost = 0
    for b in batches:
        rows, longest = len(b), max(max(lengths[i], 1) for i in b)
        assert rows <= batch_size
        assert rows == 1 or rows * longest <= budget
        cost += rows * longest + overhead
    assert cost == _brute_force_cost(lengths, batch_size, budget, overhead)


def test_least_padding_split_separates_an_outlier():
    # 31 short sentences and one long one: padding all to 80 wastes most of the batch.
    lengths = [15] * 31 + [80]
    batches = list(plan_batches(lengths, 32, 16384, 32))
    assert batches[0] == [31]
    assert sorted(batches[1]) == list(range(31))
    assert list(plan_batches(lengths, 32, 16384)) == [[31, *range(31)]]


# --- exact cases for causal models, segments and the least-padding limits ------------


def test_plan_causal_keeps_each_overlap_in_the_earlier_window():
    # A decoder sees only the left context: the earlier window has more of it.
    assert plan_windows(25, 10, 4, causal=True).tolist() == [
        [0, 10, 0, 10],
        [6, 16, 10, 16],
        [12, 22, 16, 22],
        [15, 25, 22, 25],
    ]


def test_kept_positions_skip_the_prefix_and_the_overlap():
    window = Window(0, 6, 16, 8, 14)
    pieces, positions = kept_positions([window], [(0, 0)], 20, 1, np.array([0, 30]))
    assert pieces.tolist() == [8, 9, 10, 11, 12, 13]
    assert positions.tolist() == [3, 4, 5, 6, 7, 8]
    pieces, positions = kept_positions([window], [(0, 0)], 20, 0, np.array([0, 30]))
    assert positions.tolist() == [2, 3, 4, 5, 6, 7]


def test_kept_positions_of_windows_of_several_texts_rows_and_columns():
    # Text 1 starts at piece 5 of the batch; window b is packed after a in row 0.
    a = Window(0, 0, 3, 0, 3)
    b = Window(1, 0, 4, 0, 2)
    c = Window(1, 2, 6, 2, 6)
    bounds = np.array([0, 5, 11])
    pieces, positions = kept_positions([a, b, c], [(0, 0), (0, 5), (1, 0)], 12, 1, bounds)
    assert pieces.tolist() == [0, 1, 2, 5, 6, 7, 8, 9, 10]
    # a: columns 1-3 of row 0; b: columns 6-7 (after a's 5 positions and its
    # own prefix); c: keeps from its first piece, columns 1-4 of row 1.
    assert positions.tolist() == [1, 2, 3, 6, 7, 13, 14, 15, 16]
    empty = kept_positions([], [], 12, 1, bounds)
    assert [len(e) for e in empty] == [0, 0]


def test_make_windows_passes_stride_and_causal_on():
    assert make_windows([20], 10, 4) == [
        Window(0, 0, 10, 0, 8),
        Window(0, 6, 16, 8, 13),
        Window(0, 10, 20, 13, 20),
    ]
    assert make_windows([20], 10, 4, causal=True) == [
        Window(0, 0, 10, 0, 10),
        Window(0, 6, 16, 10, 16),
        Window(0, 10, 20, 16, 20),
    ]


def test_segment_windows_stay_inside_their_segment():
    # Pieces 5..25 of text 3: windows are numbered in the text's pieces.
    assert segment_windows([(3, 5, 25), (3, 25, 27)], 10, 4) == [
        Window(3, 5, 15, 5, 13),
        Window(3, 11, 21, 13, 18),
        Window(3, 15, 25, 18, 25),
        Window(3, 25, 27, 25, 27),
    ]


def test_least_padding_split_allows_a_batch_of_exactly_the_budget():
    assert list(plan_batches([4, 4], 2, 8, 1)) == [[0, 1]]
    assert list(plan_batches([4, 5], 2, 8, 1)) == [[1], [0]]


def test_least_padding_split_counts_short_windows_as_they_are():
    # Two one-piece windows fill a budget of 2 together.
    assert list(plan_batches([1, 1], 2, 2, 1)) == [[0, 1]]
    assert list(plan_batches([0, 1], 2, 2, 1)) == [[1, 0]]
