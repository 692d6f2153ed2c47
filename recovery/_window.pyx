# cython: language_level=3, freethreading_compatible=True
"""Compiled outcome window: the breaker's whole hot path.

This is the C twin of :mod:`recovery._window_py`, which is the readable
reference; both implement the same rules and pass the same tests. Here the
bookkeeping runs inside ``cython.critical_section(self)``: on GIL builds that
costs nothing and the GIL makes the pure-C block atomic; on free-threaded builds
it is the object's own mutex. So the locked blocks below are kept pure C: no
Python calls, no reference counting. When a user clock object must be read, the
block gives up with ``NEED_CLOCK`` before changing anything, the clock is read
outside, and the block runs again.
"""

cimport cython
from libc.math cimport NAN, isinf, isnan, pow
from libc.string cimport memmove, memset
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME

import contextvars
import logging
import weakref

from recovery import state as _codes
from recovery._window_settings import mismatched, window_settings
from recovery.config import LATENCY_BUCKETS, matches, split_matchers
from recovery.errors import (
    CircuitOpenError,
    CircuitRepairingError,
    foreign_exit,
    not_callable,
    refusal,
)
from recovery.state import STATES, TRIP_REASONS

include "_window_codes.pxi"

include "_window_rules.pxi"


cdef inline double _monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline double _wall(int which) noexcept nogil:
    cdef timespec ts
    clock_gettime(which, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline int _transition(int old, int new) noexcept nogil:
    return old << 4 | new


include "_window_blocks.pxi"


cdef class Window


cdef struct Slide:
    # The window's counts after one more outcome, before they are stored (Window._slide).
    Py_ssize_t count
    Py_ssize_t failures
    Py_ssize_t slow


cdef inline bint _closed_token(Window window, int* state, long long* token) noexcept:
    """A closed circuit's token, without the lock, as the twin's ``try_admit`` takes it.

    The generation is read first: one read before a transition is older than the
    state, which makes the call one admitted before it (it then counts in the totals
    only). False when the circuit is not closed (or the window not initialised).
    """
    cdef long long generation = window._generation
    if window._state == CLOSED and window._settings != NULL:
        state[0] = CLOSED
        token[0] = generation << GEN_SHIFT
        return True
    return False


cdef class Window:
    """Outcome window, state machine and admission for one breaker, behind one lock."""

    cdef readonly str name
    cdef readonly object _config
    cdef readonly object _clock
    cdef object _clock_read        # the clock's bound monotonic(), or None for the C clock
    cdef _Rules _rules              # the config's settings and matchers, shared
    cdef object _observer
    cdef public object _failure_hook   # hook(exc, tripped) after a failure or a slow trip

    # The window, then one byte a trial slot (its lap; 0: free). Allocated by the first
    # outcome or manual transition (_ensure_ring), so a breaker never called holds none;
    # every state but CLOSED is reached through one of those, so it exists whenever a
    # trial slot can be taken.
    cdef unsigned char* _ring
    cdef unsigned char _lap        # the lap of the last trial admitted, 1..255
    cdef unsigned char* _slots
    cdef Settings* _settings        # &_rules.settings: the config's numbers
    cdef Py_ssize_t _pos, _count, _window_failures, _window_slow
    cdef unsigned long long* _latency_counts   # LATENCY_SLOTS counts; NULL unless record_latency
    cdef PyObject* _spare_args      # the args of the last rejection's error (recovery_new_rejection)
    cdef double _latency_sum

    cdef int _state
    cdef int _trip                  # why it last opened: a TRIP_ code (TRIP_NONE: closed)
    cdef long long _generation
    cdef int _backoff_level
    cdef Py_ssize_t _trials, _trial_successes
    cdef double _open_until, _half_open_since

    cdef unsigned long long _total_requests, _total_failures, _total_successes
    cdef unsigned long long _total_rejections, _total_slow
    cdef double _last_failure, _last_success, _state_changed, _open_since, _open_total

    def __cinit__(self, *args, **kwargs):
        self._ring = NULL
        self._slots = NULL
        self._latency_counts = NULL
        self._spare_args = NULL

    def __init__(self, str name, config, clock=None):
        self.name = name
        self._config = config
        self._clock = clock
        self._clock_read = None if clock is None else clock.monotonic
        self._rules = _rules_of(config)
        self._settings = &self._rules.settings
        if self._settings.record_latency and self._latency_counts == NULL:
            self._latency_counts = <unsigned long long*>PyMem_Malloc(
                LATENCY_SLOTS * sizeof(unsigned long long))
            if self._latency_counts == NULL:
                raise MemoryError()
            memset(self._latency_counts, 0, LATENCY_SLOTS * sizeof(unsigned long long))
        self._observer = None
        self._failure_hook = None
        self._state = CLOSED
        self._last_failure = NAN
        self._last_success = NAN
        self._state_changed = _wall(CLOCK_REALTIME)

    def __dealloc__(self):
        PyMem_Free(self._ring)
        PyMem_Free(self._latency_counts)
        Py_XDECREF(self._spare_args)

    @cython.final
    cdef int _ensure_ring(self) except -1:
        """Allocate the window and the trial slots, once (outside the locked blocks)."""
        cdef Py_ssize_t length
        cdef unsigned char* ring
        if self._ring != NULL:
            return 0
        length = self._settings.size + self._settings.trial_limit
        ring = <unsigned char*>PyMem_Malloc(length)
        if ring == NULL:
            raise MemoryError()
        memset(ring, 0, length)
        with cython.critical_section(self):
            if self._ring == NULL:
                self._ring = ring
                self._slots = ring + self._settings.size
                ring = NULL
        PyMem_Free(ring)  # another thread installed one first
        return 0

    @cython.final
    cdef inline int _ready(self) except -1:
        """Refuse to run on a window whose ``__init__`` never ran (it has no config)."""
        if self._config is None:
            return self._not_initialised()
        return 0

    @cython.final
    cdef int _not_initialised(self) except -1:
        # Apart from _ready, so that the check itself is inlined where it is made.
        raise RuntimeError(
            f"{type(self).__name__} was not initialised: a subclass's __init__ must "
            f"call super().__init__(name, config, clock)"
        )

    # -- rules: pure C, called inside the critical section ------------------------------

    @cython.final
    cdef inline bint _read_now(self, double* now) noexcept:
        """Fill ``now`` if it is unknown and the C clock serves; False if a user clock must."""
        if not isnan(now[0]):
            return True
        if self._clock_read is not None:
            return False
        now[0] = _monotonic()
        return True

    @cython.final
    cdef inline double _open_period(self) noexcept:
        cdef double period = self._settings.timeout * pow(
            self._settings.factor, self._backoff_level)
        return period if period < self._settings.max_interval else self._settings.max_interval

    @cython.final
    cdef int _move(self, int new, double now) noexcept:
        cdef int old = self._state
        cdef bint was_open = old == OPEN or old == REPAIRING
        cdef bint is_open = new == OPEN or new == REPAIRING
        if was_open and not is_open:
            self._open_total += now - self._open_since
        elif is_open and not was_open:
            self._open_since = now
        self._state = new
        if new == CLOSED:
            self._trip = TRIP_NONE
        self._generation += 1
        self._trials = 0
        self._trial_successes = 0
        self._state_changed = _wall(CLOCK_REALTIME)
        self._half_open_since = now
        if self._ring != NULL:
            memset(self._ring, 0, self._settings.size + self._settings.trial_limit)
        self._pos = 0
        self._count = 0
        self._window_failures = 0
        self._window_slow = 0
        return _transition(old, new)

    @cython.final
    cdef int _open(self, double now, double period, int reason) noexcept:
        """Open until ``now + period`` (NaN: the current backoff period) because of
        ``reason``, a TRIP_ code."""
        if isnan(period):
            period = self._open_period()
        self._open_until = now + period
        self._trip = reason
        return self._move(OPEN, now)

    @cython.final
    cdef inline int _reopen(self, double now) noexcept:
        # The level stops once the period reaches the cap: a longer outage changes
        # nothing, and the level cannot overflow.
        if self._settings.factor > 1 and self._open_period() < self._settings.max_interval:
            self._backoff_level += 1
        return self._open(now, NAN, TRIP_TRIAL_FAILED)

    @cython.final
    cdef inline long long _take_slot(self) noexcept:
        """A trial's token: the first free slot, taken; REJECTED if none is free (the
        count of trials says one is, but the scan never trusts that)."""
        cdef long long slot = 0
        while slot < self._settings.trial_limit and self._slots[slot]:
            slot += 1
        if slot == self._settings.trial_limit:
            return REJECTED
        self._lap = self._lap % 255 + 1
        self._slots[slot] = self._lap
        self._trials += 1
        return (self._generation << GEN_SHIFT | <long long>self._lap << LAP_SHIFT
                | slot << 2 | TRIAL)

    @cython.final
    cdef inline bint _holds_slot(self, long long token) noexcept:
        """Whether a current trial token still holds its slot (False once it was used)."""
        cdef long long slot = (token >> 2) & SLOT_BITS
        return (
            (token >> GEN_SHIFT) == self._generation
            and slot < self._settings.trial_limit
            and self._slots[slot] == ((token >> LAP_SHIFT) & 0xFF)
        )

    @cython.final
    cdef long long _admit(self, double now, int* transition, double* retry_after) noexcept:
        """Decide one call: a token, REJECTED (retry_after set) or NEED_CLOCK."""
        cdef int state = self._state
        cdef long long token
        transition[0] = NO_TRANSITION
        retry_after[0] = NAN
        if state == CLOSED:
            return self._generation << GEN_SHIFT
        if state == OPEN:
            if not self._read_now(&now):
                return NEED_CLOCK
            if now >= self._open_until:
                transition[0] = self._move(HALF_OPEN, now)
                return self._take_slot()
            retry_after[0] = self._open_until - now
        elif state == HALF_OPEN:
            if self._trials < self._settings.trial_limit:
                token = self._take_slot()
                if token != REJECTED:
                    return token
            if self._settings.max_half_open_wait >= 0:
                if not self._read_now(&now):
                    return NEED_CLOCK
                if now - self._half_open_since >= self._settings.max_half_open_wait:
                    transition[0] = self._reopen(now)
                    retry_after[0] = self._open_until - now
        if not self._settings.fast_fail:
            return self._generation << GEN_SHIFT | OBSERVED
        self._total_rejections += 1
        return REJECTED

    @cython.final
    cdef inline int _slide(self, int flags, Slide* after) noexcept:
        """The window's counts with one more outcome (``flags``) at the current position,
        a full window letting its oldest go, into ``after``; nothing is stored. Returns
        the rule those counts make fire: a TRIP_ code, TRIP_NONE if none."""
        cdef unsigned char old
        after.count = self._count
        after.failures = self._window_failures
        after.slow = self._window_slow
        if after.count == self._settings.size:
            old = self._ring[self._pos]
            after.failures -= old & FAILED
            after.slow -= (old & SLOW) >> 1
        else:
            after.count += 1
        after.failures += flags & FAILED
        after.slow += (flags & SLOW) >> 1
        # A rate rule cannot fire without one failure (or slow call) in the window: the
        # division is skipped on the common, all-good path.
        if after.count < self._settings.minimum_requests or not (after.failures or after.slow):
            return TRIP_NONE
        if after.failures >= self._settings.failure_threshold or (
            self._settings.failure_rate > 0 and after.failures
            and <double>after.failures / after.count >= self._settings.failure_rate
        ):
            return TRIP_FAILURES
        if (self._settings.slow_rate > 0 and after.slow
                and <double>after.slow / after.count >= self._settings.slow_rate):
            return TRIP_SLOW_CALLS
        return TRIP_NONE

    @cython.final
    cdef inline void _store(self, int flags, Slide* after) noexcept:
        """Put the outcome ``_slide`` counted in the window, with its counts."""
        self._ring[self._pos] = flags
        self._pos = self._pos + 1 if self._pos + 1 < self._settings.size else 0
        self._count = after.count
        self._window_failures = after.failures
        self._window_slow = after.slow

    @cython.final
    cdef inline void _tally(self, int flags, double duration) noexcept:
        """The lifetime totals (and latency, ``duration`` >= 0) of one finished call."""
        self._total_requests += 1
        if duration >= 0 and self._settings.record_latency:
            self._latency_counts[_latency_slot(duration)] += 1
            self._latency_sum += duration
        if flags & FAILED:
            self._total_failures += 1
            self._last_failure = _wall(CLOCK_REALTIME_COARSE)
        else:
            self._total_successes += 1
            self._last_success = _wall(CLOCK_REALTIME_COARSE)
        if flags & SLOW:
            self._total_slow += 1

    @cython.final
    cdef int _record(self, long long token, int flags, double now, double duration) noexcept:
        """Count one finished call (``duration`` < 0: untimed): a transition,
        NO_TRANSITION or NEED_CLOCK.

        The clock is needed only when the outcome causes a transition; that is
        decided before anything changes, so NEED_CLOCK leaves no trace.
        """
        cdef int kind = token & 3
        cdef bint current = (token >> GEN_SHIFT) == self._generation
        cdef bint failed = flags & FAILED
        cdef Slide after
        cdef int result = NO_TRANSITION
        cdef int fires     # the rule that opens the circuit, if one does

        if current and kind == NORMAL:
            fires = self._slide(flags, &after)
            if fires != TRIP_NONE and not self._read_now(&now):
                return NEED_CLOCK
            self._store(flags, &after)
            if fires != TRIP_NONE:
                result = self._open(now, NAN, fires)
        elif current and kind == TRIAL:
            if not self._holds_slot(token):
                return NO_TRANSITION  # a trial token used twice: spent, counts nothing
            if failed or (flags & SLOW and self._settings.slow_rate > 0):
                if not self._read_now(&now):
                    return NEED_CLOCK
                result = self._reopen(now)
            elif self._trial_successes + 1 >= self._settings.success_threshold:
                if not self._read_now(&now):
                    return NEED_CLOCK
                self._backoff_level = 0
                result = self._move(CLOSED, now)
            else:
                self._slots[(token >> 2) & SLOT_BITS] = 0
                self._trials -= 1
                self._trial_successes += 1

        self._tally(flags, duration)
        return result

    @cython.final
    cdef inline bint _record_success(self, long long token) noexcept:
        """Count an untimed success of a call admitted while closed (the common case) in
        one locked block, without the general path's dispatch. False, with nothing
        changed, when it is not that case, or when this outcome opens the circuit (a rate
        rule, once the window holds minimum_requests outcomes): ``_record_outcome`` then
        counts it."""
        cdef Slide after
        with cython.critical_section(self):
            if (token & 3 != NORMAL or (token >> GEN_SHIFT) != self._generation
                    or self._ring == NULL or self._slide(0, &after) != TRIP_NONE):
                return False
            self._store(0, &after)
            self._tally(0, -1.0)
        return True

    @cython.final
    cdef inline void _release(self, long long token) noexcept:
        if token & 3 == TRIAL and self._holds_slot(token):
            self._slots[(token >> 2) & SLOT_BITS] = 0
            self._trials -= 1

    # -- the Python-facing operations -----------------------------------------------------

    @cython.final
    cdef inline double _clock_now(self) except? -1.0:
        if self._clock_read is None:
            return _monotonic()
        return self._clock_read()

    @cython.final
    cdef long long _admit_call(self, int* state, double* retry_after) except? ADMIT_ERROR:
        """Admit one call: its token, or REJECTED with the deciding state and retry_after."""
        cdef long long token
        cdef int transition
        cdef double now = NAN
        if _closed_token(self, state, &token):
            return token
        self._ready()
        while True:
            with cython.critical_section(self):
                token = self._admit(now, &transition, retry_after)
                state[0] = self._state
            if token != NEED_CLOCK:
                break
            now = self._clock_now()
        if transition != NO_TRANSITION:
            try:
                self._notify(transition)
            except BaseException:
                # A listener's KeyboardInterrupt: the call never runs, its slot is freed.
                with cython.critical_section(self):
                    self._release(token)
                raise
        return token

    @cython.final
    cdef long long _try_admit(self) except? ADMIT_ERROR:
        cdef int state
        cdef double retry_after
        cdef long long token = self._admit_call(&state, &retry_after)
        if token == REJECTED:
            raise _rejection(self, state, retry_after)
        return token

    @cython.final
    cdef int _record_outcome(
        self, long long token, int flags, object exc, double duration
    ) except -3:
        """Record under the lock; then, outside it, tell listeners and the failure hook.

        Every caller has checked ``_ready()``: an admission did, or ``record``/``_end``."""
        cdef int transition
        cdef double now = NAN
        if self._ring == NULL:
            self._ensure_ring()
        while True:
            with cython.critical_section(self):
                transition = self._record(token, flags, now, duration)
            if transition != NEED_CLOCK:
                break
            now = self._clock_now()
        if transition != NO_TRANSITION:
            self._notify(transition)
        cdef bint tripped = transition != NO_TRANSITION and (transition & 15) == OPEN
        if (flags & FAILED or tripped) and self._failure_hook is not None:
            self._failure_hook(exc, tripped)
        return 0

    @cython.final
    cdef int _notify(self, int transition) except -1:
        self._transitioned(transition >> 4, transition & 15)
        return 0

    @cython.final
    cdef inline double _start_time(self, long long token) except? START_ERROR:
        """The start time of an admitted call, or -1.0 when nothing times it (no slow-call
        rule, no observer, no latency histogram)."""
        if (self._settings.slow_duration < 0 and self._observer is None
                and not self._settings.record_latency):
            return -1.0
        return self._timed_start(token)

    @cython.final
    cdef double _timed_start(self, long long token) except? START_ERROR:
        """The start time of an admitted call; a user clock that raises frees the admission."""
        try:
            return self._clock_now()
        except BaseException:
            self.release(token)
            raise

    @cython.final
    cdef int _finish(self, long long token, object exc, double start) except -1:
        """Classify the end of a call (``exc`` is None on success) and record it."""
        cdef int flags = 0
        cdef double duration = 0.0
        cdef _Rules rules = self._rules
        if exc is not None:
            if (
                not isinstance(exc, Exception)
                or (rules.has_ignore and isinstance(exc, rules.ignore_types))
                or (rules.has_ignore_tests and matches(self.name, rules.ignore_tests, exc, False))
            ):
                with cython.critical_section(self):
                    self._release(token)
                return 0
            if isinstance(exc, rules.record_types) or (
                rules.has_record_tests and matches(self.name, rules.record_tests, exc, True)
            ):
                flags = FAILED
        if start >= 0:
            duration = self._clock_now() - start
            if 0 <= self._settings.slow_duration <= duration:
                flags |= SLOW
        self._record_outcome(token, flags, exc, duration if start >= 0 else -1.0)
        if self._observer is not None:
            try:
                self._observer(start, not (flags & FAILED), duration)
            except Exception:
                _logger.exception("trace observer of breaker %r failed", self.name)
        return 0

    @cython.final
    cdef int _enter_block(self, int* state, double* retry_after) except -1:
        """Admit a ``with`` or ``async with`` block and keep its admission in the
        blocks of the current context, so that its exit records against it. 1 if the
        block is rejected (``state`` and ``retry_after`` say why): the caller raises,
        so that the error's traceback holds no frame of this module."""
        cdef _Blocks blocks = _blocks(True)
        blocks.reserve()  # before the admission: nothing can fail after it
        cdef long long token = self._admit_call(state, retry_after)
        if token == REJECTED:
            return 1
        blocks.push(self, token, self._start_time(token))
        return 0

    @cython.final
    cdef int _exit_block(self, exc) except -1:
        cdef _Blocks blocks = _blocks(False)
        cdef long long token
        cdef double start
        cdef Py_ssize_t index = -1 if blocks is None else blocks.find(self)
        if index < 0:
            # Entered in another thread or task: nothing here to pair with.
            self._lost_admission()
            raise foreign_exit(self.name, "thread or task")
        blocks.take(index, &token, &start)
        if exc is None and start < 0:
            if not self._record_success(token):
                self._record_outcome(token, 0, None, -1.0)
        else:
            self._finish(token, exc, start)
        return 0

    def __aenter__(self):
        """Admit the block now (``async with`` awaits the result at once): nothing
        here blocks, so the awaitable returned is already done."""
        cdef int state
        cdef double retry_after
        if self._enter_block(&state, &retry_after):
            raise _rejection(self, state, retry_after)
        return _done(self)

    def __aexit__(self, exc_type, exc, tb):
        self._exit_block(exc)
        return _done(None)

    def _guard(self, fn):
        """``fn`` guarded by this breaker, called straight from C (what ``@breaker`` returns)."""
        return _new_guard(self, fn, 0)

    def _guard_async(self, fn):
        """A coroutine function ``fn`` guarded by this breaker: each call returns an
        awaitable call admitted when first awaited."""
        return _new_guard(self, fn, 1)

    def try_admit(self):
        """Admit one call or raise :class:`CircuitOpenError`; returns its token."""
        return self._try_admit()

    def record(self, long long token, bint failed, double duration=0.0):
        """Count the outcome of a call admitted with ``token`` that took ``duration``
        seconds (which decides whether it was slow, and with ``record_latency`` is put
        in the histogram)."""
        cdef int flags = FAILED if failed else 0
        self._ready()
        if 0 <= self._settings.slow_duration <= duration:
            flags |= SLOW
        self._record_outcome(token, flags, None, duration)

    def release(self, long long token):
        """Give back a call's admission without counting an outcome (ignored exception)."""
        self._ready()
        with cython.critical_section(self):
            self._release(token)

    def _begin(self):
        """Admit a call that is not one callable (a generator, a coroutine): its token
        and start time, for :meth:`_end`. Raises :class:`CircuitOpenError`."""
        cdef long long token = self._try_admit()
        return token, self._start_time(token)

    def _end(self, long long token, double start, exc):
        """Record how a call admitted by :meth:`_begin` ended (``exc`` None: success)."""
        self._ready()
        self._finish(token, exc, start)

    def _lost_admission(self):
        """A block was exited where its admission cannot be found (another thread or
        task). If it held a trial slot, nothing will give it back: a half-open circuit
        reopens, as for a trial that never reported (its generation then ends, so the
        lost token holds nothing)."""
        cdef double now = self._clock_now()
        cdef int transition = NO_TRANSITION
        self._ready()
        with cython.critical_section(self):
            if self._state == HALF_OPEN:
                transition = self._reopen(now)
        if transition != NO_TRANSITION:
            self._notify(transition)

    # -- manual control -------------------------------------------------------------------

    @cython.final
    cdef int _control(self, Control action, double arg) except -3:
        """Apply one manual action under the lock; returns the transition or NO_TRANSITION."""
        cdef double now = self._clock_now()
        cdef int transition = NO_TRANSITION
        cdef int state
        self._ready()
        self._ensure_ring()
        with cython.critical_section(self):
            state = self._state
            if action == RESET:
                self._backoff_level = 0
                transition = self._move(CLOSED, now)
                if state == CLOSED:
                    transition = NO_TRANSITION
            elif action == FORCE_OPEN:
                transition = self._open(now, arg, TRIP_FORCED)
                if state == OPEN:
                    transition = NO_TRANSITION
            elif action == BEGIN_REPAIR:
                if state == CLOSED:
                    self._trip = TRIP_FORCED  # no trip to repair: someone decided to
                if state != REPAIRING:
                    transition = self._move(REPAIRING, now)
            elif action == END_REPAIR:
                # A failed repair opens again for the reason the circuit was open for.
                if state == REPAIRING:
                    transition = (self._move(HALF_OPEN, now) if arg
                                  else self._open(now, NAN, self._trip))
            elif action == ALLOW_TRIAL:
                if state == OPEN:
                    transition = self._move(HALF_OPEN, now)
        if transition != NO_TRANSITION:
            self._notify(transition)
        return transition

    def reset(self):
        """Close the circuit: window cleared, backoff reset (totals are kept)."""
        self._control(RESET, 0.0)

    def force_open(self, duration=None):
        """Open now for ``duration`` seconds (None: the current open period; inf: until reset)."""
        if duration is not None and not duration >= 0:
            raise ValueError(f"duration must be >= 0 seconds, got {duration!r}")
        self._control(FORCE_OPEN, NAN if duration is None else duration)

    def begin_repair(self):
        """Reject every call with CircuitRepairingError while a strategy works on the plugin."""
        self._control(BEGIN_REPAIR, 0.0)

    def end_repair(self, bint success):
        """Leave REPAIRING: to HALF_OPEN on success, else OPEN. False if it was not repairing."""
        return self._control(END_REPAIR, 1.0 if success else 0.0) != NO_TRANSITION

    def allow_trial(self):
        """Move an OPEN circuit to HALF_OPEN now (a health check proved the dependency alive)."""
        return self._control(ALLOW_TRIAL, 0.0) != NO_TRANSITION

    # -- views ----------------------------------------------------------------------------

    @property
    def state_code(self):
        return self._state

    @property
    def retry_after(self):
        """Seconds until a trial call will be admitted; 0 if calls pass now; None if unknown."""
        cdef double now = self._clock_now()
        cdef int state
        cdef double until
        with cython.critical_section(self):
            state = self._state
            until = self._open_until
        if state != OPEN:
            return 0.0 if state == CLOSED else None
        if isinf(until):
            return None  # held open until reset
        return max(until - now, 0.0)

    @property
    def trip_reason(self):
        """Why the circuit last opened; None while it is closed."""
        cdef int trip
        with cython.critical_section(self):
            trip = self._trip
        return TRIP_REASONS[trip]

    def window_counts(self):
        """``(calls, failures)`` in the current sliding window, read together."""
        cdef Py_ssize_t count, failures
        with cython.critical_section(self):
            count = self._count
            failures = self._window_failures
        return count, failures

    def _read_settings(self):
        """The settings this window runs on, read back (tests check the copy is whole)."""
        self._ready()
        return self._settings[0]

    def _snapshot(self):
        """A consistent copy of the counters, taken under the lock."""
        self._ready()
        cdef double now = self._clock_now()
        cdef int state
        cdef unsigned long long requests, failures, successes, rejections, slow_calls
        cdef Py_ssize_t count, window_failures, window_slow
        cdef double last_failure, last_success, changed, open_total, retry_in
        cdef int level
        cdef unsigned long long latency[LATENCY_SLOTS]
        cdef double latency_sum
        cdef Py_ssize_t i
        with cython.critical_section(self):
            state = self._state
            requests = self._total_requests
            failures = self._total_failures
            successes = self._total_successes
            rejections = self._total_rejections
            slow_calls = self._total_slow
            count = self._count
            window_failures = self._window_failures
            window_slow = self._window_slow
            last_failure = self._last_failure
            last_success = self._last_success
            changed = self._state_changed
            open_total = self._open_total
            if state == OPEN or state == REPAIRING:
                open_total += now - self._open_since
            retry_in = self._open_until - now
            level = self._backoff_level
            for i in range(LATENCY_SLOTS):
                latency[i] = 0 if self._latency_counts == NULL else self._latency_counts[i]
            latency_sum = self._latency_sum
        return {
            "state": state,
            "total_requests": requests,
            "total_failures": failures,
            "total_successes": successes,
            "total_rejections": rejections,
            "total_slow_calls": slow_calls,
            "window_count": count,
            "window_failures": window_failures,
            "window_slow_calls": window_slow,
            "last_failure": None if isnan(last_failure) else last_failure,
            "last_success": None if isnan(last_success) else last_success,
            "state_change_time": changed,
            "circuit_open_time": open_total,
            "retry_in": retry_in if state == OPEN and not isinf(retry_in) else None,
            "backoff_level": level,
            "latency": (
                (tuple([latency[i] for i in range(LATENCY_SLOTS)]), latency_sum)
                if self._settings.record_latency else None
            ),
        }

    def set_observer(self, observer):
        """Call ``observer(start, ok, latency)`` after every executed call (None to stop)."""
        self._observer = observer

    def replay(self, const double[:] t, ok, const double[:] latency):
        """Run a recorded trace through this window: event ``i`` is a call at time ``t[i]``.

        A rejected event does not happen; an admitted one records ``ok[i]`` with
        ``latency[i]`` as its duration, at time ``t[i] + latency[i]``. The clock
        object is not read and listeners are not called. Returns
        ``(admitted, states)``: per event, 1 if it was admitted, and the state
        after it.
        """
        cdef Py_ssize_t n = t.shape[0]
        cdef Py_ssize_t i
        cdef long long token
        cdef int transition, flags
        cdef double retry_after, lat
        # Accept bytes, bytearray or array('b'/'B'): any one-byte-per-item buffer.
        cdef const unsigned char[:] oks = memoryview(ok).cast("B")
        if oks.shape[0] != n or latency.shape[0] != n:
            raise ValueError(
                f"t, ok and latency must have the same length, "
                f"got {n}, {oks.shape[0]}, {latency.shape[0]}"
            )
        admitted = bytearray(n)
        states = bytearray(n)
        cdef unsigned char[:] admitted_view = admitted
        cdef unsigned char[:] states_view = states
        self._ready()
        self._ensure_ring()
        with cython.critical_section(self):
            for i in range(n):
                token = self._admit(t[i], &transition, &retry_after)
                if token >= 0:
                    admitted_view[i] = 1
                    lat = latency[i]
                    flags = 0 if oks[i] else FAILED
                    if 0 <= self._settings.slow_duration <= lat:
                        flags |= SLOW
                    self._record(token, flags, t[i] + lat, lat)
                states_view[i] = self._state
        return bytes(admitted), bytes(states)

    def _transitioned(self, int old, int new):
        """Called after every transition, outside the lock; the breaker tells its listeners."""


include "_window_dispatch.pxi"

include "_window_hooks.pxi"
