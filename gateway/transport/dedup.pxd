import cython

cdef unsigned long long _MASK

# _offer_known: the windows as C arrays and the seqs as C integers (the loop a reading).
@cython.locals(
    highs=cython.longlong[:], newest=cython.longlong[:], seen=cython.ulonglong[:],
    i=Py_ssize_t, slot=Py_ssize_t, seq=cython.longlong, ts=cython.longlong,
    high=cython.longlong,
)
cpdef _offer_known(window, dict known, list devices, list seqs, list stamps, list verdicts)

@cython.locals(i=Py_ssize_t)
cpdef _add_new(window, dict known, list devices, list seqs, list stamps, list verdicts)
