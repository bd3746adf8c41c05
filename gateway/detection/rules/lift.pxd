import cython

from gateway.detection.rules.table cimport RowJudge, RowValues

cdef bint _is_fault(object code) except -1

# LiftJudge: a lift's openers on its row, as C numbers.
cdef class LiftJudge(RowJudge):
    cdef Py_ssize_t passenger, door, car, zone, mode, fault, speed, rated, top, bottom, power
    cdef double ratio

    @cython.locals(stopped=bint)
    cpdef bint judge(self, RowValues view, long long ts, dict present) except -1
    cpdef fill(self, RowValues view)
