import cython

@cython.locals(
    rows=list, owners=list, columns=list, values=list, signals=dict, known=dict,
    held=Py_ssize_t, index=Py_ssize_t,
)
cpdef tuple _entries(table, items)
