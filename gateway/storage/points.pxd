import cython

cdef dict _FLOAT_FIELDS, _FIELDS, _float_texts, _estate_tags

cpdef telemetry_line(place, reading, bint plain_ids=*)

cpdef checked_telemetry_line(place, tuple fields)

@cython.locals(
    per_kind=tuple, known=tuple, names=dict, parts=list, float_texts=dict, field=tuple,
    int_texts=dict, key=tuple, bounds=tuple,
)
cpdef _fast_line(place, tuple fields, bint plain_ids, bint checked)
