import cython

# A kind's slot table, read as a C array.
cdef class _SlotView:
    cdef int[:, ::1] slots
    cpdef void taken(self, table)

# _gather: the batch's judged values written as C numbers into arrays (typed views), each
# index and counter a C integer; the tables' look-ups typed as dicts.
@cython.locals(
    capacity=Py_ssize_t, entries=Py_ssize_t, index=Py_ssize_t, row=Py_ssize_t,
    at=Py_ssize_t, core=int, gate_at=Py_ssize_t, slot=Py_ssize_t, gate=Py_ssize_t,
    ts=cython.longlong, number=double, core_mask=cython.longlong,
    owner_at=cython.longlong[::1], core_at=cython.longlong[::1], slot_at=cython.longlong[::1],
    stamp_at=cython.longlong[::1], value_at=cython.double[::1],
    tables=dict, codes_of=dict, batch_kinds=dict, codes=dict, rows=dict,
    view=_SlotView, shape=list, shape_codes=list, position=Py_ssize_t,
    shape_length=Py_ssize_t, names=list, seasonal_at=list, gates=list, known=tuple,
)
cpdef object _gather(detectors, items)

