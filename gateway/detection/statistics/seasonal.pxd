import cython

cdef double RECENT_ALPHA

# _pass: the whole series in C numbers; the slots are small numpy arrays read as C arrays.
@cython.locals(
    ts_ms=cython.longlong[::1], values=cython.double[::1], slots=cython.longlong[::1],
    within=cython.double[::1], per_day=cython.longlong, horizon=cython.longlong,
    explains=double, error_horizon=cython.longlong, spread_horizon=cython.longlong,
    level_out=cython.double[::1], residual=cython.double[::1], usual_out=cython.double[::1],
    spread_out=cython.double[::1], in_use=cython.uchar[::1],
    count_slots=cython.longlong, usual=cython.double[::1], spread=cython.double[::1],
    seen=cython.longlong[::1], spread_n=cython.longlong[::1], total=double,
    filled=cython.longlong, err_profile=double, err_level=double, judged=cython.longlong,
    err_step=double, err_between=double, using=bint, anchor=double, run_mean=double,
    run_dev=double, nan=double, visit_slot=cython.longlong, visit_day=cython.longlong,
    visit_sum=double, visit_n=cython.longlong, r=Py_ssize_t, x=double, b=Py_ssize_t,
    day=cython.longlong, mean=double, count=cython.longlong, step=double, level=double,
    a=double, expected=double, calm=double, base=Py_ssize_t, other=Py_ssize_t,
    between=double, recent=double, recent_was=double, twin=Py_ssize_t, own=Py_ssize_t, varies=double, tolerance=cython.longlong,
    shift=cython.longlong, near=Py_ssize_t, sign=cython.longlong, nearest=double, miss=double, weight=double, amplitude=double, resolution=double,
)
cpdef void _pass(ts_ms, values, slots, within, per_day, horizon, explains, error_horizon,
                 spread_horizon, tolerance, level_out, residual, usual_out, spread_out, in_use)
