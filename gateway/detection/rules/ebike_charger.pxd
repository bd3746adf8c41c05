import cython

from gateway.detection.rules.table cimport RowValues

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
