import cython

cdef dict _FLOAT_FIELDS, _FIELDS, _estate_tags
cdef tuple _NO_SLOT

cpdef telemetry_line(place, reading, bint plain_ids=*)

cpdef checked_telemetry_line(place, tuple fields)

cdef _remember_float(dict texts, value, str text)

cdef _remember_int(dict texts, value, str text)

@cython.locals(
    per_kind=tuple, known=tuple, names=dict, slots_by_count=dict, slots=list, parts=list,
    slot=tuple, field=tuple, found=tuple, int_texts=dict, float_texts=dict, key=tuple, bounds=tuple,
    position=cython.Py_ssize_t, count=cython.Py_ssize_t, number=cython.double,
    kept_number=cython.double, low=cython.double, high=cython.double,
    seq_number=cython.longlong, ts_number=cython.longlong,
)
cpdef _fast_line(place, tuple fields, bint plain_ids, bint checked)
