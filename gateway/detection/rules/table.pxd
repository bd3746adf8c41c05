import cython

@cython.locals(
    held_rows=dict, kept=dict, recomputed=frozenset, openers=list, present=dict,
    index=Py_ssize_t, derives=bint, busy=bint,
)
cpdef _check_readings(rules, list rows, items, dict current, set open_rows, list out)
