# Part of recovery/_window.pyx (included there, one extension module): the error of a
# rejected call, and the hooks through which the C entry points (_window.h) reach a window.

# What a rejection reads, held in C variables: no module dictionary lookup per rejection.
cdef tuple _states = STATES
cdef object _open_error = CircuitOpenError
cdef object _repairing_error = CircuitRepairingError


cdef object _rejection(Window window, int state, double retry_after):
    """The error for a rejected call; built outside the lock, raised by the caller."""
    # The type's tp_new alone: BaseException's fills ``args`` in C; the Python
    # __init__ would only store the same three values again, at a cost on every
    # rejection (it about doubles it).
    if state == REPAIRING:
        return _new_rejection(_repairing_error, window.name, _states[state], NAN,
                              &window._spare_args)
    return _new_rejection(_open_error, window.name, _states[state],
                          NAN if isinf(retry_after) else retry_after, &window._spare_args)


cdef long long _admit_hook(object self, int* state, double* retry_after,
                           double* start) except? ADMIT_ERROR:
    """Admit a call and read its start time (``_start_time``), or REJECTED."""
    cdef Window window = <Window>self
    cdef long long token
    if not _closed_token(window, state, &token):
        token = window._admit_call(state, retry_after)
        if token == REJECTED:
            return token
    start[0] = window._start_time(token)
    return token


cdef object _reject_hook(object self, int state, double retry_after):
    return _rejection(<Window>self, state, retry_after)


cdef object _refuse_hook(object self, long long token, object result):
    """fn returned a coroutine or generator: free the admission, close it, say what to use."""
    (<Window>self).release(token)
    return refusal(result)


cdef object _uncallable_hook(const char* api, object fn):
    return not_callable(api.decode(), fn)


cdef int _finish_hook(object self, long long token, PyObject* exc, double start) except -1:
    cdef Window window = <Window>self
    if exc == NULL and start < 0:
        # The common case: a closed-state success with nothing timed.
        if window._record_success(token):
            return 0
        if token & 3 == NORMAL:
            return window._record_outcome(token, 0, None, -1.0)
    return window._finish(token, None if exc == NULL else <object>exc, start)


cdef int _enter_hook(object self, int* state, double* retry_after) except -1:
    return (<Window>self)._enter_block(state, retry_after)


cdef int _exit_hook(object self, object exc) except -1:
    return (<Window>self)._exit_block(exc)


cdef int _release_hook(object self, long long token) except -1:
    cdef Window window = <Window>self
    with cython.critical_section(window):
        window._release(token)
    return 0


_install_methods(Window, Dispatcher, <void*>_admit_hook, <void*>_reject_hook,
                 <void*>_finish_hook, <void*>_route_hook,
                 <void*>_fallback_hook, <void*>_divert_hook, <void*>_refuse_hook,
                 <void*>_uncallable_hook, <void*>_release_hook, <void*>_enter_hook,
                 <void*>_exit_hook)
