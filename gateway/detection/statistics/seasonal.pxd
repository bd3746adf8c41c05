import cython

cdef double RECENT_ALPHA
cdef long long _DAY_MS
cdef long long _NEVER
cdef long long _COUNT_CAP
cdef int _G_SEEN, _G_MEAN, _G_DEV, _G_COS, _G_SIN
cdef int _TOTAL, _FILLED, _ERR_PROFILE, _ERR_LEVEL, _JUDGED, _ERR_STEP, _ERR_BETWEEN, _USING
cdef int _ANCHOR, _AMPLITUDE, _RESOLUTION, _RUN_MEAN, _RUN_DEV, _RECENT, _VISIT_SLOT, _VISIT_DAY
cdef int _VISIT_SUM, _VISIT_N, _COUNT, _LAST_X

# _steps: the batch in C numbers; gates and profiles are numpy arrays read as C arrays.
@cython.locals(
    start=Py_ssize_t, gates=cython.longlong[::1], ts_ms=cython.longlong[::1],
    values=cython.double[::1], slots=cython.longlong[::1], within=cython.double[::1],
    per_day=cython.longlong, horizon=cython.longlong, explains=double,
    error_horizon=cython.longlong, spread_horizon=cython.longlong, tolerance=double,
    slot_minutes=cython.longlong, gate_horizon_s=double, gate_min_s=double,
    gate_share=double, offset_ms=cython.longlong, gate_last_t=cython.longlong[::1],
    gate_state=cython.float[:, ::1], gate_profile=cython.int[::1], state=cython.double[:, ::1],
    usual=cython.float[:, ::1], spread=cython.float[:, ::1], seen=cython.uchar[:, ::1],
    spread_n=cython.uchar[:, ::1], flags=cython.uchar[::1], residual=cython.double[::1],
    usual_out=cython.double[::1], spread_out=cython.double[::1], level_out=cython.double[::1],
    profile_out=cython.longlong[::1],
    count_slots=cython.longlong, nan=double, j=Py_ssize_t, g=Py_ssize_t, x=double,
    t=cython.longlong, b=Py_ssize_t, k=Py_ssize_t, seen_s=double, dev=double, c=double,
    s=double, mean=double, dt=double, a=double, d=double, angle=double, total=double,
    filled=double, err_profile=double, err_level=double, judged=double, err_step=double,
    err_between=double, using=bint, was_using=bint, anchor=double, amplitude=double,
    resolution=double, run_mean=double, run_dev=double, recent=double,
    visit_slot=cython.longlong, visit_day=cython.longlong, visit_sum=double, visit_n=double,
    r=double, day=cython.longlong, mean_of_day=double, count=cython.longlong, was=double,
    near=Py_ssize_t, level=double, recent_was=double, expected=double, nearest=double,
    calm=double, own=Py_ssize_t, twin=Py_ssize_t, varies=double, base=Py_ssize_t,
    other=Py_ssize_t, between=double, position=double, lowest=cython.longlong,
    highest=cython.longlong, shift=cython.longlong, miss=double, weight=double,
)
cpdef Py_ssize_t _steps(start, gates, ts_ms, values, slots, within, per_day, horizon, explains,
                        error_horizon, spread_horizon, tolerance, slot_minutes, gate_horizon_s,
                        gate_min_s, gate_share, offset_ms, gate_last_t, gate_state,
                        gate_profile, state, usual, spread, seen, spread_n, flags, residual,
                        usual_out, spread_out, level_out, profile_out)
