import cython

# _pass: the whole series in C numbers; the 48 bins are small numpy arrays read as C arrays.
@cython.locals(
    ts_ms=cython.longlong[::1], values=cython.double[::1], bins=cython.longlong[::1],
    within=cython.double[::1], day=cython.longlong, visit_bin=cython.longlong,
    visit_day=cython.longlong, visit_sum=double, visit_n=cython.longlong, mean=double,
    other=Py_ssize_t,
    level_out=cython.double[::1], usual_out=cython.double[::1], spread_out=cython.double[::1],
    in_use=cython.uchar[::1], usual=cython.double[::1], spread=cython.double[::1],
    seen=cython.longlong[::1], horizon=cython.longlong, explains=double,
    error_horizon=cython.longlong, total=double, filled=cython.longlong, err_profile=double,
    err_level=double, judged=cython.longlong,
    r=Py_ssize_t, x=double, b=Py_ssize_t, count=cython.longlong, level=double,
    expected=double, a=double, nan=double, run_mean=double, run_dev=double, use=bint, w=double, updated=double,
)
cpdef void _pass(ts_ms, values, bins, within, horizon, explains, error_horizon, level_out,
                 usual_out, spread_out, in_use)
