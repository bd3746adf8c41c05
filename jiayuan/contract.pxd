import cython

cdef set _valid_ids
cdef dict _FAST_BOUNDS

cpdef bint _valid_id(text)

cpdef check_reading(reading, topic, now_ms=*, window=*, bint values=*)

cpdef check_fields(tuple fields, topic, now_ms=*, window=*, bint values=*)

cpdef check_fields_within(
    tuple fields, topic, earliest, latest, now_ms, window, bint values=*, bint known_ids=*
)

cpdef tuple topic_traits(topic)

@cython.locals(fast=dict)
cpdef check_fields_on(
    tuple fields, topic, bint on_batch, bint on_event_channel, earliest, latest, now_ms,
    window, bint values=*, bint known_ids=*
)

@cython.locals(fast=dict, bounds=tuple)
cpdef check_values(kind, values)
