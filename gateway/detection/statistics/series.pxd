import cython

@cython.locals(
    owners=list, names=list, cores=list, slots=list, stamps=list, values=list,
    tables=dict, columns=dict, seasonal_at=list, gates=list, gate=Py_ssize_t, row_slots=list, cached=list, known_slots=dict, kind_slots=dict, index=Py_ssize_t, row=Py_ssize_t, at=Py_ssize_t,
)
cpdef tuple _gather(detectors, items)
