# Part of recovery/_window.pyx (included there, one extension module): the constants,
# C declarations and import-time checks that every other part of the window uses.

cdef extern from "<time.h>":
    enum: CLOCK_REALTIME_COARSE

# recovery.state's state codes and trip reason codes as C constants; the module
# refuses to import if they differ (below).
cdef enum:
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2
    REPAIRING = 3

cdef enum:
    TRIP_NONE = 0
    TRIP_FAILURES = 1
    TRIP_SLOW_CALLS = 2
    TRIP_TRIAL_FAILED = 3
    TRIP_FORCED = 4

STATE_CODES = (CLOSED, OPEN, HALF_OPEN, REPAIRING)
TRIP_CODES = (TRIP_NONE, TRIP_FAILURES, TRIP_SLOW_CALLS, TRIP_TRIAL_FAILED, TRIP_FORCED)
if STATE_CODES != _codes.STATE_CODES or TRIP_CODES != _codes.TRIP_CODES:
    raise ImportError("recovery._window's state or trip codes differ from "
                      "recovery.state's: rebuild it")

# What ``_control`` does.
cdef enum Control:
    RESET
    FORCE_OPEN      # arg: the period; NaN for the current backoff period
    BEGIN_REPAIR
    END_REPAIR      # arg: 1.0 on success
    ALLOW_TRIAL

# The settings table (recovery/_window_settings.py) in C: the config's numbers, converted
# from window_settings(config) by field name at construction. A field's kind is its
# row's: Py_ssize_t for int, double for float, bint for bool. The module refuses to import
# if the struct and the table differ in a name or a kind.
cdef struct Settings:
    Py_ssize_t size
    Py_ssize_t trial_limit
    Py_ssize_t minimum_requests
    Py_ssize_t failure_threshold
    double failure_rate
    double slow_rate
    double slow_duration
    Py_ssize_t success_threshold
    double timeout
    double factor
    double max_interval
    double max_half_open_wait
    bint fast_fail
    bint record_latency

cdef Settings _no_settings
memset(&_no_settings, 0, sizeof(Settings))
_settings_mismatched = mismatched(<dict>_no_settings)
if _settings_mismatched:
    raise ImportError(f"recovery._window's Settings differs from the settings table in "
                      f"{_settings_mismatched}: rebuild it")

cdef enum:
    FAILED = 1
    SLOW = 2

cdef enum:
    NORMAL = 0
    TRIAL = 1
    OBSERVED = 2

# A token is ``generation << GEN_SHIFT | lap << LAP_SHIFT | slot << 2 | kind``: bits
# 2-11 hold a trial's slot (half_open_max_calls <= 1,000 < 2**10), bits 12-19 the lap
# (1..255, advanced by every trial admission) it was taken on. The slot is freed by the
# token's first use only, and a token used again after a later trial took its slot
# does not match that trial's lap.
cdef enum:
    GEN_SHIFT = 20
    LAP_SHIFT = 12
    SLOT_BITS = 0x3FF

# The context (contextvars.Context) the thread runs in: every thread has its own, and
# so has every asyncio task. (A field of CPython's thread state, read directly: no
# public function returns the current context without copying it.)
cdef extern from "Python.h":
    ctypedef struct PyThreadState:
        PyObject* context
    PyThreadState* PyThreadState_Get()
    int PyContextVar_Get(object var, PyObject* default_value, PyObject** value) except -1
    object PyContextVar_Set(object var, object value)

# Results of the locked blocks besides a token (or REJECTED) or a transition.
cdef enum:
    NO_TRANSITION = -1
    NEED_CLOCK = -2

cdef object _logger = logging.getLogger("recovery.breaker")

# The latency histogram's bucket bounds (config.LATENCY_BUCKETS), copied into C at
# import; a window counts calls per bucket in a fixed array of LATENCY_SLOTS (the
# last one is unbounded), so recording a call allocates nothing.
cdef enum:
    LATENCY_SLOTS = 19
cdef double _latency_bounds[LATENCY_SLOTS - 1]
if len(LATENCY_BUCKETS) != LATENCY_SLOTS - 1:
    raise ImportError(f"recovery._window holds {LATENCY_SLOTS - 1} latency buckets, "
                      f"config.LATENCY_BUCKETS has {len(LATENCY_BUCKETS)}: rebuild it")
for _i, _bound in enumerate(LATENCY_BUCKETS):
    _latency_bounds[_i] = _bound


cdef inline Py_ssize_t _latency_slot(double duration) noexcept nogil:
    """The bucket of ``duration``: the first bound it does not exceed (``le``)."""
    cdef Py_ssize_t slot = 0
    while slot < LATENCY_SLOTS - 1 and duration > _latency_bounds[slot]:
        slot += 1
    return slot

# ``call`` and ``execute_with_recovery`` are C (_window.h says why); they reach the
# bookkeeping below through the function pointers installed at the end of this module.
cdef extern from "_window.h":
    enum:
        REJECTED "RECOVERY_REJECTED"        # an admission's answer: not admitted
        START_ERROR "RECOVERY_START_ERROR"  # the except? value of a call's start time
        ADMIT_ERROR "RECOVERY_ADMIT_ERROR"  # the except? value of an admission
    object _new_rejection "recovery_new_rejection"(
        object type, object name, object state, double retry_after, PyObject** spare)
    object _new_guard "recovery_guard_new"(object breaker, object fn, int is_async)
    object _done "recovery_ready_new"(object value)
    int _install_methods "recovery_install_methods"(
        object window, object dispatcher, void* admit, void* reject, void* finish,
        void* route, void* fallback, void* divert, void* refuse, void* uncallable,
        void* release, void* enter, void* exit) except -1
