import cython

cdef int _ABSENT, _INT, _FLOAT, _OTHER
cdef long long _EXACT_INT, _LEAST_EXACT_INT

# RowValues: a device's kept values read and written in the arrays as C arrays (a value
# costs a few dozen instructions, not a numpy scalar's hundreds).
cdef class RowValues:
    cdef dict columns
    cdef tuple names
    cdef dict derived
    cdef public Py_ssize_t row
    cdef double[:, ::1] numbers
    cdef unsigned char[:, ::1] kinds
    cdef dict others

    cpdef bind(self, numbers, kinds, dict others)
    @cython.locals(row=Py_ssize_t, kind=cython.uchar)
    cdef object cell(self, Py_ssize_t column, object default)
    @cython.locals(row=Py_ssize_t, kind=cython.uchar)
    cdef bint holds(self, Py_ssize_t column, long long on) except -1
    @cython.locals(
        row=Py_ssize_t, kind=cython.uchar, whole=cython.longlong, real=double, changed=bint
    )
    cdef bint put(self, Py_ssize_t column, object value) except? -1
    cpdef double real(self, name)
    @cython.locals(row=Py_ssize_t, kind=cython.uchar)
    cpdef double real_at(self, Py_ssize_t column)
    @cython.locals(row=Py_ssize_t)
    cpdef put_real(self, Py_ssize_t column, double value)
    cpdef clear_derived(self)

# RowJudge: a family's derive and openers on a device's row, called through a C vtable.
cdef class RowJudge:
    cpdef bint judge(self, RowValues view, long long ts, dict present) except -1
    cpdef fill(self, RowValues view)

@cython.locals(
    held_rows=dict, judge=RowJudge, kept=dict, openers=list, present=dict, index=Py_ssize_t,
    derives=bint, busy=bint, at=Py_ssize_t, copied=bint, remembers=bint, changed=bint, every=bint,
    judged=bint, signalled=bint, shape=list, shape_columns=list, position=Py_ssize_t,
    shape_length=Py_ssize_t, column=Py_ssize_t,
)
cpdef _check_readings(
    rules, RowValues view, list rows, items, set open_rows, bytearray quiet, list out
)

@cython.locals(known=dict, capacity=Py_ssize_t, row=Py_ssize_t, rows=list)
cpdef list _device_rows(rules, items)
