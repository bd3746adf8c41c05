import cython

# _next: the index and the seqs as C integers (the one call a reading).
@cython.locals(high=cython.longlong)
cpdef bint _next(highs, newest, seen, Py_ssize_t slot, long long seq, long long ts)
