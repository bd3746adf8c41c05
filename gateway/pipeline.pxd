import cython

from jiayuan.contract cimport check_fields_on, topic_traits

# _take_readings: its lists, tuples and dicts as such (Cython's own list appends and
# item reads, not calls through Python), the index and verdict as C integers.
@cython.locals(
    kept=list, kept_places=list, kept_lines=list, devices=list, seqs=list,
    stamps=list, verdicts=list, lines=list, accepted=list, fields=tuple,
    i=Py_ssize_t, verdict=cython.int, replayed_unjudged=Py_ssize_t, known=bint,
    on_batch=bint, on_event_channel=bint,
)
cpdef _take_readings(pipeline, message, topic, envelope, estate, dict places, now, batch)
