import cython

cdef tuple _PORT_NAMES

@cython.locals(residual=dict, port=int, power=double, temp=double, lag=double)
cpdef dict _lagged_residuals(values, double gain, double rise_per_w)

cdef double _real(object value)
