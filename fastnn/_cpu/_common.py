"""CPU helpers shared by the public wrappers (twin of fastnn/_cuda/_common.py)."""
from fastnn._config import jit


@jit
def first_bad_label(target, n_classes, ignore_index, use_ignore):
    """Index of the first label outside ``[0, n_classes)`` that is not ignored, else -1.

    ``target`` is a contiguous int64 array.  One branch-free counting pass
    (it vectorizes, ~0.1 ns per label) settles the common all-valid case;
    only a bad batch pays for the second, early-exit search.
    """
    n_bad = 0
    for i in range(target.size):
        t = target[i]
        n_bad += (t < 0 or t >= n_classes) and not (use_ignore and t == ignore_index)
    if n_bad == 0:
        return -1
    for i in range(target.size):
        t = target[i]
        if (t < 0 or t >= n_classes) and not (use_ignore and t == ignore_index):
            return i
    return -1
