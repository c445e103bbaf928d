"""Order statistics over a float array, in place, without lists.

Part of ``edge.acoustic``; runs unchanged on CPython and MicroPython.
``sorted()`` on a MicroPython board would box every float into its own heap
object (16 bytes each, plus the list); a heapsort of an array copy needs only
the copy.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from array import array  # noqa: F401  (used in type comments)


def _sift_down(a, start, end):
    # type: (array[float], int, int) -> None
    root = start
    v = a[root]
    while True:
        child = 2 * root + 1
        if child > end:
            break
        if child < end and a[child] < a[child + 1]:
            child += 1
        if not v < a[child]:
            break
        a[root] = a[child]
        root = child
    a[root] = v


def sort_in_place(a, n):
    # type: (array[float], int) -> None
    """Heapsort a[0:n] ascending in place (O(n log n), no recursion, no allocation)."""
    for start in range(n // 2 - 1, -1, -1):
        _sift_down(a, start, n - 1)
    for end in range(n - 1, 0, -1):
        t = a[0]
        a[0] = a[end]
        a[end] = t
        _sift_down(a, 0, end - 1)


def percentile_sorted(a, n, q):
    # type: (array[float], int, float) -> float
    """The q-th percentile (0..100) of the ascending a[0:n], linear interpolation.

    The same definition as ``numpy.percentile``'s default (``method='linear'``,
    Hyndman and Fan's type 7): position ``(q / 100) (n - 1)`` between order
    statistics.
    """
    if n <= 0:
        raise ValueError("percentile of no values")
    pos = (q / 100.0) * (n - 1)
    i = int(pos)
    if i >= n - 1:
        return a[n - 1]
    t = pos - i
    lo = a[i]
    return lo + (a[i + 1] - lo) * t
