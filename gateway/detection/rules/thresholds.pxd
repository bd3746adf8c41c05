import cython

# _scan: a batch's values against the table's checks, as C numbers (float32 as the
# stepping compares), without a Python object a value.
@cython.locals(
    signals=dict, known=dict, rows=list, busy=set, busy_rows=list, busy_checks=list,
    entries=Py_ssize_t, pending=Py_ssize_t, index=Py_ssize_t, row=Py_ssize_t,
    check=Py_ssize_t, signal=Py_ssize_t, column=Py_ssize_t, slot=Py_ssize_t,
    checks=Py_ssize_t, width=Py_ssize_t, held_row=Py_ssize_t, held_check=Py_ssize_t,
    pair=Py_ssize_t, size=Py_ssize_t, value=cython.float,
    last=cython.float[:, ::1], active=cython.uchar[:, ::1], seen=cython.uchar[::1],
    kept=cython.double[:, ::1], own_of=cython.longlong[::1], kept_of=cython.longlong[::1],
    checks_of=cython.longlong[:, ::1], signal_of=cython.longlong[::1],
    sign=cython.float[::1], open_at=cython.float[::1], pending_rows=Py_ssize_t[::1],
    pending_columns=Py_ssize_t[::1], pending_values=cython.float[::1],
)
cpdef tuple _scan(table, items)

@cython.locals(
    last=cython.float[:, ::1], rows=Py_ssize_t[::1], columns=Py_ssize_t[::1],
    values=cython.float[::1], index=Py_ssize_t,
)
cpdef _store_pending(table, Py_ssize_t pending)
