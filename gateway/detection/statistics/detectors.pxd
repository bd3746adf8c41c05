import cython

cdef int _COUNT_CAP
cdef double KNOWN_SHARE

# _update_each: every learned value a C float (float32 state), every index and counter
# a C integer, the parameters C numbers; a reading costs a few hundred instructions.
@cython.locals(
    slots=cython.longlong[::1], stamps=cython.longlong[::1], values=cython.double[::1],
    flags=cython.uchar[::1], ratios=cython.double[::1], befores=cython.uchar[::1],
    keep_before=bint, ratio=double,
    last_x=cython.float[::1], last_t=cython.longlong[::1], count=cython.ushort[::1],
    active=cython.uchar[::1], spec_of=cython.ushort[::1], floors=cython.double[::1],
    minimums=cython.double[::1], enabled_specs=cython.uchar[::1],
    mean=cython.float[::1], scale_of=cython.float[::1], c_level=cython.uchar[::1],
    rate_of=cython.float[::1], c_rate=cython.uchar[::1], p_change=cython.float[::1],
    run_of=cython.ushort[::1], run_s_of=cython.float[::1], slow_of=cython.float[::1],
    ref_of=cython.float[::1], ref_scale_of=cython.float[::1], c_drift=cython.uchar[::1],
    step_of=cython.float[::1], held_of=cython.ushort[::1], jitter_of=cython.float[::1],
    alt_of=cython.float[::1], alt=double, near=double, known=bint, swap=bint, is_open=bint,
    timed=bint, min_period=double, on=int, level=int, rated=int, stuck_bit=int, drift=int,
    scaled=int, has_level=int, has_rate=int, has_stuck=int, has_drift=int,
    ls_warmup=int, ls_alpha=double, ls_k=double, ls_clear_k=double, ls_persist=int,
    ls_clear_n=int, ls_flagged=double, ls_relearn=int, res_share=double, drp_ratio=double,
    rp_warmup=int, rp_alpha=double, rp_factor=double, rp_floor_factor=double,
    rp_band=double, rp_persist=int, rp_clear_n=int,
    sp_epsilon=double, sp_min_readings=int, sp_min_seconds=double, sp_alpha=double,
    sp_min_share=double, sp_warmup=int,
    drp_warmup=int, drp_alpha=double, drp_k=double, drp_persist=int, drp_clear_k=double,
    drp_clear_n=int,
    j=Py_ssize_t, slot=Py_ssize_t, t=cython.longlong, x=double, n=int, first=bint,
    spec=Py_ssize_t, enabled=int, floor=double, was=int, bits=int, dx=double, gap_s=double,
    dt_s=double, learn=double, pace=double, scale=double, mean_was=double, dev=double,
    z=double, exceed=bint, step=int, alpha=double, a=double, band=double, speed=double,
    rate=double, limit=double, fast=bint, same=bint, old_run=int, run=int, run_s=double,
    share=double, a_share=double, folded=double, least=double, adx=double, rebase=bint,
    held=int, jitter=double, settled=bint, weight=double, slow=double, ref=double, ref_scale=double, away=double,
)
cpdef void _update_each(core, slots, stamps, values, flags, ratios, befores)

@cython.locals(count=int)
cdef int _held(int was, bint opens, bint clears, int counter, int persist, int clear_n)

cdef double _quotient(double a, double b)
