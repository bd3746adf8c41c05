import cython

from gateway.detection.rules.table cimport RowJudge, RowValues

cdef tuple _PORT_NAMES

@cython.locals(
    residual=dict, port=int, power=double, temp=double, lag=double, row=RowValues,
)
cpdef dict _lagged_residuals(values, double gain, double rise_per_w)

cdef double _real(object values, RowValues row, str name)

@cython.locals(
    ordered=list, count=Py_ssize_t, half=Py_ssize_t, at=Py_ssize_t, own=double,
    upper=double, lower=double, excess=dict,
)
cpdef dict _peer_excess(dict residual)

@cython.locals(each=double)
cdef bint _all_finite(list numbers) except -1

# PileJudge: a pile's derived values and openers on its row, ports as C doubles.
cdef class PileJudge(RowJudge):
    cdef Py_ssize_t[::1] power, temp, lag
    cdef Py_ssize_t lag_ts, smoke
    cdef tuple temp_names, excess_names
    cdef double tau_ms, rise_per_w, peer_excess
    cdef unsigned char[::1] reported
    cdef double[::1] residual, excess, ordered

    @cython.locals(
        last=double, gain=double, count=Py_ssize_t, port=Py_ssize_t, power=double,
        temp=double, lag=double, residual=double, at=Py_ssize_t, opens=bint,
    )
    cpdef bint judge(self, RowValues view, long long ts, dict present) except -1
    @cython.locals(
        at=Py_ssize_t, port=Py_ssize_t, others=Py_ssize_t, half=Py_ssize_t, own=double,
        below=Py_ssize_t, upper=double, lower=double,
    )
    cdef _excesses(self, Py_ssize_t count)
    @cython.locals(port=Py_ssize_t, excess=double)
    cpdef fill(self, RowValues view)
