import cython

from gateway.detection.rules.table cimport RowJudge, RowValues

# FireJudge: a panel's derived values and openers on its row, as C doubles.
cdef class FireJudge(RowJudge):
    cdef Py_ssize_t pressure, commanded, running, was_commanded, peak, start, limit
    cdef Py_ssize_t[::1] states, columns
    cdef double sag_max, start_margin, start_weight
    cdef tuple signals
    cdef double[::1] signs, limits

    @cython.locals(
        pressure=double, commanded=bint, peak=double, start=double, limit=double,
        at=Py_ssize_t, sign=double,
    )
    cpdef bint judge(self, RowValues view, long long ts, dict present) except -1
    @cython.locals(peak=double, start=double)
    cdef _learn_start(self, RowValues view, double pressure)
    cpdef fill(self, RowValues view)
