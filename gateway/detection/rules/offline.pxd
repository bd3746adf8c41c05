import cython

# _seen_kind: the clock's arrays as C arrays (a reading costs a few hundred instructions,
# not the thousands of numpy scalar reads and writes).
@cython.locals(
    rows=dict, places=list, last_ts=cython.longlong[:], last_rx=cython.longlong[:],
    offline=cython.uchar[:], capacity=Py_ssize_t, latest=cython.longlong,
    index=Py_ssize_t, row=Py_ssize_t, ts=cython.longlong, received_ms=cython.longlong,
    previous=cython.longlong,
)
cpdef _seen_kind(clock, items, list indexes, list backs, code)
