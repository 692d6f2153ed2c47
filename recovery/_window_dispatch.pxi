# Part of recovery/_window.pyx (included there, one extension module): the recovery manager's
# routes from a plugin name to its breaker, and the hooks the C entry point calls.

cdef class Route:
    """One plugin's way through ``execute_with_recovery``: its breaker and fallback.

    ``diverted`` sends every call to the dispatcher's ``_diverted_call`` instead
    (the manager sets it while the plugin is degraded). ``fallbacks_served``
    counts the calls the fallback answered.
    """

    cdef readonly Window breaker
    cdef readonly object fallback
    cdef public bint diverted
    cdef unsigned long long _served

    def __init__(self, Window breaker not None, fallback=None):
        self.breaker = breaker
        self.fallback = fallback
        self.diverted = False

    @property
    def fallbacks_served(self):
        return self._served

    def serve_fallback(self, args, kwargs):
        """Answer a call with the fallback (which must exist), counting it."""
        with cython.critical_section(self):
            self._served += 1
        return self.fallback(*args, **kwargs)


cdef class Dispatcher:
    """Routes ``execute_with_recovery(plugin_name, fn, ...)`` to the plugin's breaker, in C.

    The recovery manager subclasses it, as the breaker subclasses ``Window``, so
    the per-call path from plugin name to ``fn`` has no Python frame in it.
    """

    cdef dict _routes

    def __cinit__(self, *args, **kwargs):
        self._routes = {}

    def _add_route(self, str name, Route route not None):
        self._routes[name] = route

    def _diverted_call(self, plugin_name, fn, args, kwargs):
        """Serve a call of a diverted route; the manager decides what that means."""
        raise NotImplementedError


cdef int _route_hook(object self, object name, PyObject** breaker, PyObject** route) except -1:
    """Find the route of ``name``: new references in *breaker and *route; 1 if diverted."""
    found = (<Dispatcher>self)._routes.get(name)
    if found is None:
        raise KeyError(f"unknown plugin {name!r}")
    cdef Route r = <Route>found
    Py_INCREF(r)
    Py_INCREF(r.breaker)
    route[0] = <PyObject*>r
    breaker[0] = <PyObject*>r.breaker
    return 1 if r.diverted else 0


cdef PyObject* _fallback_hook(object route) noexcept:
    """The route's fallback, counted as served (borrowed; the route holds it), or NULL."""
    cdef Route r = <Route>route
    if r.fallback is None:
        return NULL
    with cython.critical_section(r):
        r._served += 1
    return <PyObject*>r.fallback


cdef object _divert_hook(object self, PyObject** args, Py_ssize_t nargs, PyObject* kwnames):
    cdef Py_ssize_t i
    positional = tuple([<object>args[i] for i in range(2, nargs)])
    keywords = {}
    if kwnames != NULL:
        for i, key in enumerate(<tuple>kwnames):
            keywords[key] = <object>args[nargs + i]
    return self._diverted_call(<object>args[0], <object>args[1], positional, keywords)
