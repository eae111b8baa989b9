"""The shape helpers: conv_output_size and transpose_output_sizes."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numbadeconv as nd
from numbadeconv.testing import reference_output_size

paddings = st.one_of(
    st.sampled_from(["SAME", "VALID"]),
    st.tuples(st.integers(0, 6), st.integers(0, 6)),
)
kernels = st.integers(1, 9)
strides = st.integers(1, 5)
dilations = st.integers(1, 4)


def reference_or_error(in_size, kernel, stride, padding, dilation):
    try:
        return reference_output_size(in_size, kernel, stride, padding, dilation)
    except ValueError:
        return ValueError


def brute_force_sizes(out_size, kernel, stride, padding, dilation):
    pads = sum(padding) if isinstance(padding, tuple) else 0
    limit = (out_size + 2) * stride + (kernel - 1) * dilation + pads + 2
    return tuple(
        h
        for h in range(limit)
        if reference_or_error(h, kernel, stride, padding, dilation) == out_size
    )


@settings(deadline=None, max_examples=300)
@given(st.integers(0, 60), kernels, strides, paddings, dilations)
def test_conv_output_size_matches_reference(in_size, kernel, stride, padding, dilation):
    expected = reference_or_error(in_size, kernel, stride, padding, dilation)
    if expected is ValueError:
        with pytest.raises(ValueError):
            nd.conv_output_size(in_size, kernel, stride, padding, dilation)
    else:
        got = nd.conv_output_size(in_size, kernel, stride, padding, dilation)
        assert type(got) is int
        assert got == expected


@settings(deadline=None, max_examples=300)
@given(st.integers(0, 20), kernels, strides, paddings, dilations)
def test_transpose_output_sizes(out_size, kernel, stride, padding, dilation):
    sizes = nd.transpose_output_sizes(out_size, kernel, stride, padding, dilation)
    assert isinstance(sizes, tuple)
    assert all(type(h) is int for h in sizes)
    assert list(sizes) == sorted(set(sizes))
    for h in sizes:
        assert nd.conv_output_size(h, kernel, stride, padding, dilation) == out_size
    if sizes:
        # Contiguous, and just outside the range does not map back.
        assert list(sizes) == list(range(sizes[0], sizes[-1] + 1))
        for h in (sizes[0] - 1, sizes[-1] + 1):
            if h >= 0:
                assert reference_or_error(h, kernel, stride, padding, dilation) != out_size
    assert sizes == brute_force_sizes(out_size, kernel, stride, padding, dilation)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((3, 3, 2, "SAME"), (5, 6)),
        ((3, 3, 1, "SAME"), (3,)),
        ((0, 4, 2, "VALID"), (1, 2, 3)),  # trunc((h - 4 + 2) / 2) == 0 for h = 1, 2, 3
        ((2, 3, 2, "VALID"), (5, 6)),
        ((2, 3, 2, "VALID", 2), (7, 8)),
        ((3, 3, 2, (1, 0)), (6, 7)),
    ],
)
def test_transpose_output_sizes_examples(args, expected):
    assert nd.transpose_output_sizes(*args) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((5, 3, 2, "SAME"), 3),
        ((6, 3, 2, "SAME"), 3),
        ((10, 3, 2, "SAME"), 5),
        ((1, 4, 2, "VALID"), 0),  # C++ truncation toward zero, not floor (-1)
        ((0, 3, 1, "SAME"), 0),
        ((7, 3, 1, "VALID", 3), 1),
        ((4, 3, 2, (1, 2)), 3),
    ],
)
def test_conv_output_size_examples(args, expected):
    assert nd.conv_output_size(*args) == expected


@pytest.mark.parametrize(
    "args",
    [
        (0, 4, 2, "VALID"),  # trunc(-2 / 2) == -1
        (2, 5, 1, "VALID"),
        (2, 2, 1, "VALID", 3),  # ek = 4 > 2 + 1
        (-1, 3, 1, "SAME"),
        (5, 3, 0, "SAME"),
        (5, 3, 1, "SAME", 0),
        (5, 3, 1, "FULL"),
        (5, 3, 1, (-1, 0)),
    ],
)
def test_conv_output_size_rejects(args):
    with pytest.raises(ValueError):
        nd.conv_output_size(*args)
