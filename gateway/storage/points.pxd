import cython

cdef dict _FLOAT_FIELDS, _FIELDS, _float_texts

@cython.locals(
    per_kind=tuple, known=dict, parts=list, float_texts=dict, field=tuple, int_texts=dict
)
cpdef telemetry_line(place, reading)
