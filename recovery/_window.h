/* The C half of recovery/_window.pyx: the entry points of the hot path.

   ``Window.call`` (and ``Dispatcher.execute_with_recovery``, which routes a plugin
   name to a breaker first) is a METH_FASTCALL | METH_KEYWORDS method written in C:
   the caller's argument vector goes to ``fn`` by vectorcall, so no tuple or dict is
   built per call (a ``def call(self, fn, *args, **kwargs)`` builds both), and
   ``fn``'s exception passes through untouched: no frame of ours is added to its
   traceback. The bookkeeping it calls is the Cython of _window.pyx, reached through
   function pointers that recovery_install_methods() sets at import.

   Included by _window.pyx only (one translation unit), hence the static functions. */

#ifndef RECOVERY_WINDOW_H
#define RECOVERY_WINDOW_H

#include <Python.h>
#include <structmember.h>

/* Values shared with _window.pyx, which names them in its ``except?`` clauses: a
   function that raised returns its sentinel, and the caller here checks
   PyErr_Occurred() only on that value, which no successful call returns. */
enum {
    RECOVERY_REJECTED = -1,     /* admission: the call is rejected (tokens are >= 0) */
    RECOVERY_START_ERROR = -2,  /* a call's start time: reading the clock raised */
    RECOVERY_ADMIT_ERROR = -3,  /* admission (or its start time): a user clock or a
                                   listener raised */
};


/* Set item ``i`` of a tuple to a new reference to ``value``. Only for a tuple no one
   else refers to, and items whose release runs no code (a str, a state, a float). */
static void recovery_refill(PyObject *tuple, Py_ssize_t i, PyObject *value) {
    PyObject *old = PyTuple_GET_ITEM(tuple, i);
    if (old == value) return;
    PyTuple_SET_ITEM(tuple, i, Py_NewRef(value));
    Py_DECREF(old);
}

/* The error of a rejected call: a new ``type(name, state, retry_after)``
   (``retry_after`` NaN: None), made by the type's tp_new alone (_rejection in
   _window.pyx says why).

   Its ``args`` tuple is the one the breaker kept from its last rejection (``*spare``)
   when nothing else refers to that tuple any more, filled again in place: so a breaker
   that keeps rejecting does not make and free a tuple and a float per rejection. That
   needs the GIL (nothing else runs between the check and the fill: nothing here runs
   Python code); a free-threaded build makes a new tuple each time. */
static PyObject *recovery_new_rejection(PyObject *type, PyObject *name, PyObject *state,
                                        double retry_after, PyObject **spare) {
    PyObject *args = NULL, *when, *error;
#ifndef Py_GIL_DISABLED
    if (*spare != NULL && Py_REFCNT(*spare) == 1) {
        args = Py_NewRef(*spare);
        recovery_refill(args, 0, name);
        recovery_refill(args, 1, state);
        when = PyTuple_GET_ITEM(args, 2);
        if (isnan(retry_after)) {
            recovery_refill(args, 2, Py_None);
        } else if (PyFloat_CheckExact(when) && Py_REFCNT(when) == 1) {
            ((PyFloatObject *)when)->ob_fval = retry_after;  /* only this tuple has it */
        } else {
            when = PyFloat_FromDouble(retry_after);
            if (when == NULL) goto fail;
            recovery_refill(args, 2, when);
            Py_DECREF(when);
        }
    }
#endif
    if (args == NULL) {
        when = isnan(retry_after) ? Py_NewRef(Py_None) : PyFloat_FromDouble(retry_after);
        if (when == NULL) return NULL;
        args = PyTuple_Pack(3, name, state, when);
        Py_DECREF(when);
        if (args == NULL) return NULL;
#ifndef Py_GIL_DISABLED
        if (*spare == NULL) *spare = Py_NewRef(args);
#endif
    }
    error = ((PyTypeObject *)type)->tp_new((PyTypeObject *)type, args, NULL);
    Py_DECREF(args);
    return error;
fail:
    Py_DECREF(args);
    return NULL;
}

typedef long long (*recovery_admit_fn)(PyObject *, int *, double *, double *);
typedef PyObject *(*recovery_reject_fn)(PyObject *, int, double);
typedef PyObject *(*recovery_refuse_fn)(PyObject *, long long, PyObject *);
typedef PyObject *(*recovery_uncallable_fn)(const char *, PyObject *);
typedef int (*recovery_finish_fn)(PyObject *, long long, PyObject *, double);
static recovery_admit_fn recovery_admit;
static recovery_reject_fn recovery_reject;
static recovery_refuse_fn recovery_refuse;
static recovery_uncallable_fn recovery_uncallable;
static recovery_finish_fn recovery_finish;

typedef int (*recovery_route_fn)(PyObject *, PyObject *, PyObject **, PyObject **);
typedef PyObject *(*recovery_fallback_fn)(PyObject *);
typedef PyObject *(*recovery_divert_fn)(PyObject *, PyObject *const *, Py_ssize_t,
                                        PyObject *);
static recovery_route_fn recovery_route;
static recovery_fallback_fn recovery_fallback;
static recovery_divert_fn recovery_divert;

typedef int (*recovery_release_fn)(PyObject *, long long);
static recovery_release_fn recovery_release;

/* Raise ``value``, a new exception (the reference is taken), as ``raise value`` would.
   PyErr_SetObject chains it to the exception being handled, if any, and costs about a
   tenth of a rejection even when there is none: so it serves that case only. */
static void recovery_raise(PyObject *value) {
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *handled = PyErr_GetHandledException();
#else
    PyObject *handled_type, *handled, *handled_tb;
    PyErr_GetExcInfo(&handled_type, &handled, &handled_tb);
    Py_XDECREF(handled_type);
    Py_XDECREF(handled_tb);
    if (handled == Py_None) Py_CLEAR(handled);
#endif
    if (handled == NULL) {
        PyErr_Restore(Py_NewRef(Py_TYPE(value)), value, NULL);
        return;
    }
    Py_DECREF(handled);
    PyErr_SetObject((PyObject *)Py_TYPE(value), value);
    Py_DECREF(value);
}

/* Raise the error a rejected call gets: fresh, with no frame of ours in its traceback. */
static int recovery_raise_rejection(PyObject *breaker, int state, double retry_after) {
    PyObject *value = recovery_reject(breaker, state, retry_after);
    if (value != NULL) recovery_raise(value);
    return -1;
}

/* Record how a call ended with the exception that is set; the exception stays set.
   Recording that fails (a user clock raised) is reported, never put in its place. */
static void recovery_finish_failed(PyObject *breaker, long long token, double start) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) PyException_SetTraceback(value, tb);
    if (recovery_finish(breaker, token, value, start) < 0) PyErr_WriteUnraisable(breaker);
    PyErr_Restore(type, value, tb);
}

/* Admit, run fn(*args) outside the lock, record. ``route`` (or NULL) gives the
   fallback that answers a rejected call. */
static PyObject *recovery_guarded(PyObject *breaker, PyObject *route, PyObject *fn,
                                  PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames) {
    long long token;
    int state;
    double start, retry_after;
    PyObject *result, *value, *fallback;
    /* A user clock that raises reading the start time gives the admission back. */
    token = recovery_admit(breaker, &state, &retry_after, &start);
    if (token == RECOVERY_ADMIT_ERROR && PyErr_Occurred()) return NULL;
    if (token == RECOVERY_REJECTED) {
        if (route != NULL && (fallback = recovery_fallback(route)) != NULL) {
            return PyObject_Vectorcall(fallback, args, (size_t)nargs, kwnames);
        }
        recovery_raise_rejection(breaker, state, retry_after);
        return NULL;
    }
    result = PyObject_Vectorcall(fn, args, (size_t)nargs, kwnames);
    if (result == NULL) {
        recovery_finish_failed(breaker, token, start);
        return NULL;
    }
    if (Py_IS_TYPE(result, &PyCoro_Type) || Py_IS_TYPE(result, &PyGen_Type)
            || Py_IS_TYPE(result, &PyAsyncGen_Type)) {
        /* fn has not run: refuse it, count nothing. */
        value = recovery_refuse(breaker, token, result);
        Py_DECREF(result);
        if (value == NULL) return NULL;
        PyErr_SetObject((PyObject *)Py_TYPE(value), value);
        Py_DECREF(value);
        return NULL;
    }
    if (recovery_finish(breaker, token, NULL, start) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *recovery_refuse_uncallable(const char *api, PyObject *fn) {
    PyObject *error = recovery_uncallable(api, fn);
    if (error == NULL) return NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(error), error);
    Py_DECREF(error);
    return NULL;
}

static PyObject *recovery_call(PyObject *self, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames) {
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "call() missing required argument: 'fn'");
        return NULL;
    }
    if (!PyCallable_Check(args[0])) return recovery_refuse_uncallable("call", args[0]);
    return recovery_guarded(self, NULL, args[0], args + 1, nargs - 1, kwnames);
}

static PyObject *recovery_execute(PyObject *self, PyObject *const *args,
                                  Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *breaker, *route, *result;
    int diverted;
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError,
                        "execute_with_recovery() needs plugin_name and fn");
        return NULL;
    }
    /* Before anything is routed or counted: a result passed for a function. */
    if (!PyCallable_Check(args[1])) {
        return recovery_refuse_uncallable("execute_with_recovery", args[1]);
    }
    diverted = recovery_route(self, args[0], &breaker, &route);
    if (diverted < 0) return NULL;
    if (diverted) {
        result = recovery_divert(self, args, nargs, kwnames);
    } else {
        result = recovery_guarded(breaker, route, args[1], args + 2, nargs - 2, kwnames);
    }
    Py_DECREF(breaker);
    Py_DECREF(route);
    return result;
}

/* The objects the breaker hands out: the decorator's guard, an awaited call, the done
   awaitable of async with, and the with block's methods. */
#include "_window_guards.h"

static PyMethodDef recovery_execute_def = {
    "execute_with_recovery", (PyCFunction)(void (*)(void))recovery_execute,
    METH_FASTCALL | METH_KEYWORDS,
    "execute_with_recovery($self, plugin_name, fn, /, *args, **kwargs)\n--\n\n"
    "Run fn(*args, **kwargs) through the plugin's breaker; a rejected call is answered "
    "by the plugin's fallback if it has one."
};

static PyMethodDef recovery_call_def = {
    "call", (PyCFunction)(void (*)(void))recovery_call,
    METH_FASTCALL | METH_KEYWORDS,
    "call($self, fn, /, *args, **kwargs)\n--\n\n"
    "Run fn(*args, **kwargs) through the breaker; return its value or re-raise its exception."
};

/* Put a new descriptor (a reference it steals; NULL when making it failed) in the type's
   dict under its method's name. */
static int recovery_put_descriptor(PyObject *type, PyMethodDef *def, PyObject *descr) {
    int result;
    if (descr == NULL) return -1;
    result = PyDict_SetItemString(((PyTypeObject *)type)->tp_dict, def->ml_name, descr);
    Py_DECREF(descr);
    if (result < 0) return -1;
    PyType_Modified((PyTypeObject *)type);
    return 0;
}

static int recovery_install(PyObject *type, PyMethodDef *def) {
    return recovery_put_descriptor(type, def, PyDescr_NewMethod((PyTypeObject *)type, def));
}

/* The C methods above, as CPython 3.11 specialises a call to them: only when ``self``
   is exactly of the type the method descriptor was made for. ``breaker.call(fn)`` on
   a CircuitBreaker (a subclass of Window) would miss that every time and take the
   generic call path (a type check, a result check: about a fifth of call's cost), so
   every subclass gets descriptors of its own, made for it, of the methods it inherits
   from here (none it overrides). */
static PyMethodDef *recovery_fast_defs[] = {
    &recovery_call_def, &recovery_call_async_def, &recovery_execute_def, NULL};
static PyObject *recovery_window_type, *recovery_dispatcher_type;

static int recovery_own_methods(PyObject *cls) {
    PyMethodDef **def;
    PyObject *name, *found, *descr;
    int error;
    for (def = recovery_fast_defs; *def != NULL; def++) {
        name = PyUnicode_InternFromString((*def)->ml_name);
        if (name == NULL) return -1;
        found = _PyType_Lookup((PyTypeObject *)cls, name);  /* borrowed */
        if (found == NULL || !Py_IS_TYPE(found, &PyMethodDescr_Type)
                || ((PyMethodDescrObject *)found)->d_method != *def) {
            Py_DECREF(name);
            continue;  /* not ours here, or overridden */
        }
        descr = PyDescr_NewMethod((PyTypeObject *)cls, *def);
        error = descr == NULL ? -1 : PyObject_SetAttr(cls, name, descr);
        Py_XDECREF(descr);
        Py_DECREF(name);
        if (error < 0) return -1;
    }
    return 0;
}

/* ``__init_subclass__`` of Window (or Dispatcher, ``owner``): the subclass's own
   descriptors, then the next ``__init_subclass__`` in its MRO. */
static PyObject *recovery_init_subclass(PyObject *owner, PyObject *cls, PyObject *args,
                                        PyObject *kwargs) {
    PyObject *next, *result;
    if (recovery_own_methods(cls) < 0) return NULL;
    next = PyObject_CallFunctionObjArgs((PyObject *)&PySuper_Type, owner, cls, NULL);
    if (next == NULL) return NULL;
    Py_SETREF(next, PyObject_GetAttrString(next, "__init_subclass__"));
    if (next == NULL) return NULL;
    result = PyObject_Call(next, args, kwargs);
    Py_DECREF(next);
    return result;
}

static PyObject *recovery_window_init_subclass(PyObject *cls, PyObject *args,
                                               PyObject *kwargs) {
    return recovery_init_subclass(recovery_window_type, cls, args, kwargs);
}

static PyObject *recovery_dispatcher_init_subclass(PyObject *cls, PyObject *args,
                                                   PyObject *kwargs) {
    return recovery_init_subclass(recovery_dispatcher_type, cls, args, kwargs);
}

static PyMethodDef recovery_window_init_subclass_def = {
    "__init_subclass__", (PyCFunction)(void (*)(void))recovery_window_init_subclass,
    METH_VARARGS | METH_KEYWORDS | METH_CLASS,
    "Give the subclass its own descriptors of call and call_async (the fast call path)."
};

static PyMethodDef recovery_dispatcher_init_subclass_def = {
    "__init_subclass__", (PyCFunction)(void (*)(void))recovery_dispatcher_init_subclass,
    METH_VARARGS | METH_KEYWORDS | METH_CLASS,
    "Give the subclass its own descriptor of execute_with_recovery (the fast call path)."
};

static int recovery_install_class_method(PyObject *type, PyMethodDef *def) {
    return recovery_put_descriptor(type, def,
                                   PyDescr_NewClassMethod((PyTypeObject *)type, def));
}

static int recovery_install_methods(PyObject *window, PyObject *dispatcher,
                                    void *admit, void *reject,
                                    void *finish, void *route, void *fallback,
                                    void *divert, void *refuse, void *uncallable,
                                    void *release, void *enter, void *exit) {
    recovery_release = (recovery_release_fn)release;
    recovery_enter_block = (recovery_enter_fn)enter;
    recovery_exit_block = (recovery_exit_fn)exit;
    recovery_bound_type = (PyTypeObject *)PyType_FromSpec(&recovery_bound_spec);
    if (recovery_bound_type == NULL) return -1;
    recovery_block_method_type = (PyTypeObject *)PyType_FromSpec(&recovery_block_method_spec);
    if (recovery_block_method_type == NULL) return -1;
    if (recovery_install_block_method(window, "__enter__", "($self, /)",
                                      recovery_enter_call) < 0) return -1;
    if (recovery_install_block_method(window, "__exit__", "($self, exc_type, exc, tb, /)",
                                      recovery_exit_call) < 0) return -1;
    recovery_guard_type = (PyTypeObject *)PyType_FromSpec(&recovery_guard_spec);
    if (recovery_guard_type == NULL) return -1;
    recovery_awaiting_type = (PyTypeObject *)PyType_FromSpec(&recovery_awaiting_spec);
    if (recovery_awaiting_type == NULL) return -1;
    recovery_ready_type = (PyTypeObject *)PyType_FromSpec(&recovery_ready_spec);
    if (recovery_ready_type == NULL) return -1;
    if (recovery_install(window, &recovery_call_async_def) < 0) return -1;
    recovery_refuse = (recovery_refuse_fn)refuse;
    recovery_uncallable = (recovery_uncallable_fn)uncallable;
    recovery_admit = (recovery_admit_fn)admit;
    recovery_reject = (recovery_reject_fn)reject;
    recovery_finish = (recovery_finish_fn)finish;
    recovery_route = (recovery_route_fn)route;
    recovery_fallback = (recovery_fallback_fn)fallback;
    recovery_divert = (recovery_divert_fn)divert;
    if (recovery_install(window, &recovery_call_def) < 0) return -1;
    if (recovery_install(dispatcher, &recovery_execute_def) < 0) return -1;
    recovery_window_type = Py_NewRef(window);
    recovery_dispatcher_type = Py_NewRef(dispatcher);
    if (recovery_install_class_method(window, &recovery_window_init_subclass_def) < 0) {
        return -1;
    }
    return recovery_install_class_method(dispatcher, &recovery_dispatcher_init_subclass_def);
}

#endif /* RECOVERY_WINDOW_H */
