/* Part of the C half of recovery/_window.pyx (included by _window.h, after the entry
   points it builds on): the objects a breaker hands out, each a way into
   recovery_guarded's admit / run / record outside the interpreter's Python frames. */

#ifndef RECOVERY_WINDOW_GUARDS_H
#define RECOVERY_WINDOW_GUARDS_H

/* -- the decorator: a function guarded by a breaker, called by vectorcall ---------------

   ``@breaker`` on a plain function returns one of these: calling it goes straight to
   recovery_guarded, as ``breaker.call(fn, ...)`` does, with no Python frame between.
   On a coroutine function (``is_async``) a call returns a recovery_Awaiting instead.
   It has a __dict__ (functools.update_wrapper fills it) and binds as a method does. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *breaker;
    PyObject *fn;
    PyObject *dict;
    PyObject *weakrefs;
} recovery_Guard;

static PyTypeObject *recovery_guard_type;

/* getattr(obj, name) into *result: 1 found, 0 not there, -1 error. */
static int recovery_optional_attr(PyObject *obj, const char *name, PyObject **result) {
    *result = PyObject_GetAttrString(obj, name);
    if (*result != NULL) return 1;
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
    PyErr_Clear();
    return 0;
}
static PyTypeObject *recovery_awaiting_type;
static PyTypeObject *recovery_ready_type;

/* -- awaiting fn(*args) through a breaker ---------------------------------------------

   What ``breaker.call_async(fn, ...)`` and a guarded coroutine function return: a
   coroutine (it has __await__, send, throw and close, so asyncio takes it as one) that
   admits the call when first driven, then awaits what fn returns, passing every send
   and throw through, and records how it ended. fn's arguments are kept inline
   (positional, then keyword values; ``kwnames`` names the latter). */
typedef struct {
    PyObject_VAR_HEAD
    PyObject *breaker;
    PyObject *fn;       /* NULL once called */
    PyObject *kwnames;  /* NULL when none */
    PyObject *inner;    /* the awaited iterator, while running */
    Py_ssize_t nargs;
    long long token;
    double start;
    int stage;          /* AWAITING_NEW, AWAITING_RUNNING or AWAITING_DONE */
    PyObject *args[1];
} recovery_Awaiting;

enum { AWAITING_NEW, AWAITING_RUNNING, AWAITING_DONE };

static PyObject *recovery_awaiting_new(PyObject *breaker, PyObject *fn,
                                       PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames) {
    Py_ssize_t i, total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    recovery_Awaiting *self = PyObject_GC_NewVar(recovery_Awaiting, recovery_awaiting_type,
                                                 total);
    if (self == NULL) return NULL;
    self->breaker = Py_NewRef(breaker);
    self->fn = Py_NewRef(fn);
    self->kwnames = Py_XNewRef(kwnames);
    self->inner = NULL;
    self->nargs = nargs;
    self->token = 0;
    self->start = -1.0;
    self->stage = AWAITING_NEW;
    for (i = 0; i < total; i++) self->args[i] = Py_NewRef(args[i]);
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static void recovery_awaiting_drop_call(recovery_Awaiting *self) {
    Py_ssize_t i;
    for (i = 0; i < Py_SIZE(self); i++) Py_CLEAR(self->args[i]);
    Py_CLEAR(self->fn);
    Py_CLEAR(self->kwnames);
}

/* Admit, call fn and find the iterator to await; -1 with an exception set. */
static int recovery_awaiting_start(recovery_Awaiting *self) {
    int state;
    double retry_after;
    PyObject *awaitable, *inner;
    PyObject *fn = self->fn;
    long long token = recovery_admit(self->breaker, &state, &retry_after, &self->start);
    self->stage = AWAITING_DONE;  /* until it runs */
    if (token == RECOVERY_ADMIT_ERROR && PyErr_Occurred()) goto fail;
    if (token == RECOVERY_REJECTED) {
        recovery_raise_rejection(self->breaker, state, retry_after);
        goto fail;
    }
    self->token = token;
    awaitable = PyObject_Vectorcall(fn, self->args, (size_t)self->nargs, self->kwnames);
    recovery_awaiting_drop_call(self);
    if (awaitable == NULL) {
        recovery_finish_failed(self->breaker, token, self->start);
        return -1;
    }
    if (PyCoro_CheckExact(awaitable)) {
        inner = awaitable;
    } else if (Py_TYPE(awaitable)->tp_as_async != NULL
               && Py_TYPE(awaitable)->tp_as_async->am_await != NULL) {
        inner = Py_TYPE(awaitable)->tp_as_async->am_await(awaitable);
        Py_DECREF(awaitable);
        if (inner == NULL) {
            recovery_finish_failed(self->breaker, token, self->start);
            return -1;
        }
    } else {
        /* Not awaitable: nothing ran that counts. */
        recovery_release(self->breaker, token);
        PyErr_Format(PyExc_TypeError,
                     "call_async() needs fn to return an awaitable, got %R: "
                     "use call() for a plain function", awaitable);
        Py_DECREF(awaitable);
        return -1;
    }
    self->inner = inner;
    self->stage = AWAITING_RUNNING;
    return 0;
fail:
    recovery_awaiting_drop_call(self);
    return -1;
}

/* After the awaited iterator answered ``status``: record the end, if it ended. */
static PySendResult recovery_awaiting_after(recovery_Awaiting *self, PySendResult status,
                                            PyObject **result) {
    if (status == PYGEN_NEXT) return status;
    self->stage = AWAITING_DONE;
    Py_CLEAR(self->inner);
    if (status == PYGEN_RETURN) {
        if (recovery_finish(self->breaker, self->token, NULL, self->start) < 0) {
            Py_CLEAR(*result);
            return PYGEN_ERROR;
        }
        return status;
    }
    recovery_finish_failed(self->breaker, self->token, self->start);
    return status;
}

static PySendResult recovery_awaiting_send(PyObject *op, PyObject *arg, PyObject **result) {
    recovery_Awaiting *self = (recovery_Awaiting *)op;
    *result = NULL;
    if (self->stage == AWAITING_NEW) {
        if (recovery_awaiting_start(self) < 0) return PYGEN_ERROR;
    } else if (self->stage == AWAITING_DONE) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse an already awaited breaker call");
        return PYGEN_ERROR;
    }
    return recovery_awaiting_after(self, PyIter_Send(self->inner, arg, result), result);
}

/* A send's answer as Python's iterator protocol has it: the yielded value, or NULL
   with StopIteration(value) (or the error) set. */
static PyObject *recovery_sent(PySendResult status, PyObject *result) {
    PyObject *stop;
    if (status == PYGEN_NEXT) return result;
    if (status == PYGEN_RETURN) {
        if (result == Py_None) {
            Py_DECREF(result);
            PyErr_SetNone(PyExc_StopIteration);
            return NULL;
        }
        stop = PyObject_CallOneArg(PyExc_StopIteration, result);
        Py_DECREF(result);
        if (stop != NULL) {
            PyErr_SetObject(PyExc_StopIteration, stop);
            Py_DECREF(stop);
        }
    }
    return NULL;
}

static PyObject *recovery_awaiting_iternext(PyObject *self) {
    PyObject *result;
    PySendResult status = recovery_awaiting_send(self, Py_None, &result);
    return recovery_sent(status, result);
}

static PyObject *recovery_awaiting_send_method(PyObject *self, PyObject *arg) {
    PyObject *result;
    PySendResult status = recovery_awaiting_send(self, arg, &result);
    return recovery_sent(status, result);
}

static PyObject *recovery_awaiting_throw(PyObject *op, PyObject *const *args,
                                         Py_ssize_t nargs) {
    recovery_Awaiting *self = (recovery_Awaiting *)op;
    PyObject *throw, *result, *type, *value, *tb;
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw() takes 1 to 3 arguments");
        return NULL;
    }
    if (self->stage == AWAITING_RUNNING) {
        if (recovery_optional_attr(self->inner, "throw", &throw) < 0) return NULL;
        if (throw != NULL) {
            result = PyObject_Vectorcall(throw, args, (size_t)nargs, NULL);
            Py_DECREF(throw);
            if (result != NULL) return result;  /* it yielded: still running */
            self->stage = AWAITING_DONE;
            Py_CLEAR(self->inner);
            if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
                /* It caught the error and returned: a success, as its value says. */
                PyErr_Fetch(&type, &value, &tb);
                if (recovery_finish(self->breaker, self->token, NULL, self->start) < 0) {
                    Py_XDECREF(type);
                    Py_XDECREF(value);
                    Py_XDECREF(tb);
                    return NULL;
                }
                PyErr_Restore(type, value, tb);
                return NULL;
            }
            recovery_finish_failed(self->breaker, self->token, self->start);
            return NULL;
        }
    }
    /* Not running (or nothing to pass it to): it ends the call with this error. */
    if (nargs == 1) {
        if (PyExceptionInstance_Check(args[0])) {
            PyErr_SetObject((PyObject *)Py_TYPE(args[0]), args[0]);
        } else {
            PyErr_SetObject(args[0], NULL);
        }
    } else {
        PyErr_SetObject(args[0], args[1]);
    }
    if (self->stage == AWAITING_RUNNING) {
        self->stage = AWAITING_DONE;
        Py_CLEAR(self->inner);
        recovery_finish_failed(self->breaker, self->token, self->start);
    } else {
        self->stage = AWAITING_DONE;
        recovery_awaiting_drop_call(self);
    }
    return NULL;
}

/* Closed before it finished: the call gives its admission back, counting nothing (as
   for any BaseException that is not an Exception). */
static PyObject *recovery_awaiting_close(PyObject *op, PyObject *unused) {
    recovery_Awaiting *self = (recovery_Awaiting *)op;
    PyObject *close, *result;
    if (self->stage != AWAITING_RUNNING) {
        self->stage = AWAITING_DONE;
        recovery_awaiting_drop_call(self);
        Py_RETURN_NONE;
    }
    self->stage = AWAITING_DONE;
    if (recovery_optional_attr(self->inner, "close", &close) < 0) goto failed;
    if (close != NULL) {
        result = PyObject_CallNoArgs(close);
        Py_DECREF(close);
        if (result == NULL) goto failed;
        Py_DECREF(result);
    }
    Py_CLEAR(self->inner);
    if (recovery_release(self->breaker, self->token) < 0) return NULL;
    Py_RETURN_NONE;
failed:
    Py_CLEAR(self->inner);
    recovery_finish_failed(self->breaker, self->token, self->start);
    return NULL;
}

static PyObject *recovery_self(PyObject *self) { return Py_NewRef(self); }

static int recovery_awaiting_traverse(PyObject *op, visitproc visit, void *arg) {
    recovery_Awaiting *self = (recovery_Awaiting *)op;
    Py_ssize_t i;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->breaker);
    Py_VISIT(self->fn);
    Py_VISIT(self->kwnames);
    Py_VISIT(self->inner);
    for (i = 0; i < Py_SIZE(self); i++) Py_VISIT(self->args[i]);
    return 0;
}

static int recovery_awaiting_clear(PyObject *op) {
    recovery_Awaiting *self = (recovery_Awaiting *)op;
    recovery_awaiting_drop_call(self);
    Py_CLEAR(self->inner);
    return 0;
}

static void recovery_awaiting_dealloc(PyObject *op) {
    recovery_Awaiting *self = (recovery_Awaiting *)op;
    PyTypeObject *type = Py_TYPE(op);
    PyObject *type_, *value, *tb;
    PyObject_GC_UnTrack(op);
    if (self->stage == AWAITING_RUNNING && self->breaker != NULL) {
        /* Dropped mid-await without close(): give the admission back. */
        PyErr_Fetch(&type_, &value, &tb);
        if (recovery_release(self->breaker, self->token) < 0) PyErr_WriteUnraisable(op);
        PyErr_Restore(type_, value, tb);
    }
    recovery_awaiting_clear(op);
    Py_CLEAR(self->breaker);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyMethodDef recovery_awaiting_methods[] = {
    {"send", (PyCFunction)recovery_awaiting_send_method, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))recovery_awaiting_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)recovery_awaiting_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot recovery_awaiting_slots[] = {
    {Py_tp_doc, "A call through a circuit breaker, awaited: admitted when first driven, "
                "recorded when what it awaits returns or raises."},
    {Py_am_await, (void *)recovery_self},
    {Py_am_send, (void *)recovery_awaiting_send},
    {Py_tp_iter, (void *)recovery_self},
    {Py_tp_iternext, (void *)recovery_awaiting_iternext},
    {Py_tp_methods, recovery_awaiting_methods},
    {Py_tp_traverse, (void *)recovery_awaiting_traverse},
    {Py_tp_clear, (void *)recovery_awaiting_clear},
    {Py_tp_dealloc, (void *)recovery_awaiting_dealloc},
    {0, NULL},
};

static PyType_Spec recovery_awaiting_spec = {
    "recovery._window.AwaitingCall", sizeof(recovery_Awaiting) - sizeof(PyObject *),
    sizeof(PyObject *), Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, recovery_awaiting_slots,
};

/* -- an awaitable that is already done: what ``async with``'s methods return -------------

   The compiled ``__aenter__`` and ``__aexit__`` do their bookkeeping when called (which
   ``async with`` does right before awaiting the result) and return one of these. */
typedef struct {
    PyObject_HEAD
    PyObject *value;
} recovery_Ready;

static PyObject *recovery_ready_new(PyObject *value) {
    recovery_Ready *self = PyObject_New(recovery_Ready, recovery_ready_type);
    if (self == NULL) return NULL;
    self->value = Py_NewRef(value);
    return (PyObject *)self;
}

static PySendResult recovery_ready_send(PyObject *self, PyObject *arg, PyObject **result) {
    *result = Py_NewRef(((recovery_Ready *)self)->value);
    return PYGEN_RETURN;
}

static PyObject *recovery_ready_iternext(PyObject *self) {
    PyObject *result;
    PySendResult status = recovery_ready_send(self, Py_None, &result);
    return recovery_sent(status, result);
}

static void recovery_ready_dealloc(PyObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    Py_DECREF(((recovery_Ready *)self)->value);
    PyObject_Free(self);
    Py_DECREF(type);
}

static PyType_Slot recovery_ready_slots[] = {
    {Py_am_await, (void *)recovery_self},
    {Py_am_send, (void *)recovery_ready_send},
    {Py_tp_iter, (void *)recovery_self},
    {Py_tp_iternext, (void *)recovery_ready_iternext},
    {Py_tp_dealloc, (void *)recovery_ready_dealloc},
    {0, NULL},
};

static PyType_Spec recovery_ready_spec = {
    "recovery._window.Done", sizeof(recovery_Ready), 0, Py_TPFLAGS_DEFAULT,
    recovery_ready_slots,
};

/* -- the guard's own functions ---------------------------------------------------------- */

static PyObject *recovery_guard_call(PyObject *op, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames) {
    recovery_Guard *self = (recovery_Guard *)op;
    return recovery_guarded(self->breaker, NULL, self->fn, args, PyVectorcall_NARGS(nargsf),
                            kwnames);
}

static PyObject *recovery_guard_call_async(PyObject *op, PyObject *const *args,
                                           size_t nargsf, PyObject *kwnames) {
    recovery_Guard *self = (recovery_Guard *)op;
    return recovery_awaiting_new(self->breaker, self->fn, args, PyVectorcall_NARGS(nargsf),
                                 kwnames);
}

static PyObject *recovery_guard_new(PyObject *breaker, PyObject *fn, int is_async) {
    recovery_Guard *self = PyObject_GC_New(recovery_Guard, recovery_guard_type);
    if (self == NULL) return NULL;
    self->vectorcall = is_async ? recovery_guard_call_async : recovery_guard_call;
    self->breaker = Py_NewRef(breaker);
    self->fn = Py_NewRef(fn);
    self->dict = NULL;
    self->weakrefs = NULL;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* Bound to an instance as a function is, so ``@breaker`` works on methods too. */
static PyObject *recovery_guard_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None) return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static int recovery_guard_traverse(PyObject *op, visitproc visit, void *arg) {
    recovery_Guard *self = (recovery_Guard *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->breaker);
    Py_VISIT(self->fn);
    Py_VISIT(self->dict);
    return 0;
}

static int recovery_guard_clear(PyObject *op) {
    recovery_Guard *self = (recovery_Guard *)op;
    Py_CLEAR(self->breaker);
    Py_CLEAR(self->fn);
    Py_CLEAR(self->dict);
    return 0;
}

static void recovery_guard_dealloc(PyObject *op) {
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (((recovery_Guard *)op)->weakrefs != NULL) PyObject_ClearWeakRefs(op);
    recovery_guard_clear(op);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyObject *recovery_guard_repr(PyObject *op) {
    recovery_Guard *self = (recovery_Guard *)op;
    return PyUnicode_FromFormat("<%R guarded by %R>", self->fn, self->breaker);
}

static PyMemberDef recovery_guard_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(recovery_Guard, vectorcall), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(recovery_Guard, dict), READONLY, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(recovery_Guard, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef recovery_guard_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot recovery_guard_slots[] = {
    {Py_tp_doc, "A function guarded by a circuit breaker (what @breaker returns)."},
    {Py_tp_call, (void *)PyVectorcall_Call},
    {Py_tp_descr_get, (void *)recovery_guard_get},
    {Py_tp_repr, (void *)recovery_guard_repr},
    {Py_tp_members, recovery_guard_members},
    {Py_tp_getset, recovery_guard_getset},
    {Py_tp_traverse, (void *)recovery_guard_traverse},
    {Py_tp_clear, (void *)recovery_guard_clear},
    {Py_tp_dealloc, (void *)recovery_guard_dealloc},
    {0, NULL},
};

static PyType_Spec recovery_guard_spec = {
    "recovery._window.GuardedFunction", sizeof(recovery_Guard), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
        | Py_TPFLAGS_METHOD_DESCRIPTOR,
    recovery_guard_slots,
};

static PyObject *recovery_call_async(PyObject *self, PyObject *const *args,
                                     Py_ssize_t nargs, PyObject *kwnames) {
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "call_async() missing required argument: 'fn'");
        return NULL;
    }
    if (!PyCallable_Check(args[0])) return recovery_refuse_uncallable("call_async", args[0]);
    return recovery_awaiting_new(self, args[0], args + 1, nargs - 1, kwnames);
}

static PyMethodDef recovery_call_async_def = {
    "call_async", (PyCFunction)(void (*)(void))recovery_call_async,
    METH_FASTCALL | METH_KEYWORDS,
    "call_async($self, fn, /, *args, **kwargs)\n--\n\n"
    "``await fn(*args, **kwargs)`` through the breaker: the coroutine twin of call. "
    "Admitted when awaited, recorded when fn's awaitable returns or raises."
};

/* -- with: the block's methods, in C so that a with statement costs one C call each ---- */

typedef int (*recovery_enter_fn)(PyObject *, int *, double *);
typedef int (*recovery_exit_fn)(PyObject *, PyObject *);
static recovery_enter_fn recovery_enter_block;
static recovery_exit_fn recovery_exit_block;

static int recovery_enter_call(PyObject *breaker, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames, PyObject **result) {
    int state, status;
    double retry_after;
    if (nargs != 0 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "__enter__() takes no arguments");
        return -1;
    }
    status = recovery_enter_block(breaker, &state, &retry_after);
    if (status < 0) return -1;
    /* Raised here, like call's: the error's traceback holds no frame of ours. */
    if (status > 0) return recovery_raise_rejection(breaker, state, retry_after);
    *result = Py_NewRef(breaker);
    return 0;
}

static int recovery_exit_call(PyObject *breaker, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames, PyObject **result) {
    if (nargs != 3 || kwnames != NULL) {
        PyErr_Format(PyExc_TypeError, "__exit__() takes 3 positional arguments, got %zd",
                     nargs);
        return -1;
    }
    if (recovery_exit_block(breaker, args[1]) < 0) return -1;
    *result = Py_NewRef(Py_None);
    return 0;
}

typedef int (*recovery_block_call_fn)(PyObject *, PyObject *const *, Py_ssize_t, PyObject *,
                                      PyObject **);

/* A with statement looks __enter__ and __exit__ up on the breaker and gets a bound
   method for each: two objects made and freed per block, about a fifth of its cost. So
   the two are descriptors of their own (recovery_BlockMethod) that hand out bound
   objects (recovery_Bound) from a small free list instead. A bound object holds its
   breaker as a bound method does; freed, it goes back on the list. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *breaker;
    recovery_block_call_fn call;
} recovery_Bound;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    recovery_block_call_fn call;
    const char *name;
    const char *signature;
} recovery_BlockMethod;

static PyTypeObject *recovery_bound_type;
static PyTypeObject *recovery_block_method_type;

/* The free list needs the GIL (and _Py_NewReference, exported up to 3.12). */
#if !defined(Py_GIL_DISABLED) && PY_VERSION_HEX < 0x030D0000
#define RECOVERY_FREE_LIST 1
#else
#define RECOVERY_FREE_LIST 0
#endif

#if RECOVERY_FREE_LIST
#define RECOVERY_FREE_BOUND 16
static recovery_Bound *recovery_free_bound[RECOVERY_FREE_BOUND];
static int recovery_free_bound_count;
#endif

static PyObject *recovery_bound_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                                           PyObject *kwnames) {
    recovery_Bound *self = (recovery_Bound *)op;
    PyObject *result;
    if (self->call(self->breaker, args, PyVectorcall_NARGS(nargsf), kwnames, &result) < 0) {
        return NULL;
    }
    return result;
}

static PyObject *recovery_bound_new(PyObject *breaker, recovery_block_call_fn call) {
    recovery_Bound *self;
#if RECOVERY_FREE_LIST
    if (recovery_free_bound_count > 0) {
        self = recovery_free_bound[--recovery_free_bound_count];
        _Py_NewReference((PyObject *)self);
    } else
#endif
    {
        /* The object holds a reference to its type (PyObject_Init takes it) while it
           is on the free list too: only a real free gives it back. */
        self = PyObject_GC_New(recovery_Bound, recovery_bound_type);
        if (self == NULL) return NULL;
    }
    self->vectorcall = recovery_bound_vectorcall;
    self->breaker = Py_NewRef(breaker);
    self->call = call;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static int recovery_bound_traverse(PyObject *op, visitproc visit, void *arg) {
    Py_VISIT(((recovery_Bound *)op)->breaker);
    return 0;
}

static int recovery_bound_clear(PyObject *op) {
    Py_CLEAR(((recovery_Bound *)op)->breaker);
    return 0;
}

static void recovery_bound_dealloc(PyObject *op) {
    PyObject_GC_UnTrack(op);
    recovery_bound_clear(op);
#if RECOVERY_FREE_LIST
    if (recovery_free_bound_count < RECOVERY_FREE_BOUND) {
        recovery_free_bound[recovery_free_bound_count++] = (recovery_Bound *)op;
        return;
    }
#endif
    PyObject_GC_Del(op);
    Py_DECREF(recovery_bound_type);
}

static PyObject *recovery_bound_repr(PyObject *op) {
    recovery_Bound *self = (recovery_Bound *)op;
    return PyUnicode_FromFormat("<bound method %s of %R>",
                                self->call == recovery_enter_call ? "__enter__" : "__exit__",
                                self->breaker);
}

static PyMemberDef recovery_bound_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(recovery_Bound, vectorcall), READONLY, NULL},
    {"__self__", T_OBJECT, offsetof(recovery_Bound, breaker), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot recovery_bound_slots[] = {
    {Py_tp_call, (void *)PyVectorcall_Call},
    {Py_tp_repr, (void *)recovery_bound_repr},
    {Py_tp_members, recovery_bound_members},
    {Py_tp_traverse, (void *)recovery_bound_traverse},
    {Py_tp_clear, (void *)recovery_bound_clear},
    {Py_tp_dealloc, (void *)recovery_bound_dealloc},
    {0, NULL},
};

static PyType_Spec recovery_bound_spec = {
    "recovery._window.BoundBlockMethod", sizeof(recovery_Bound), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    recovery_bound_slots,
};

/* The descriptor in the class: bound on an instance; called on the class, it takes the
   breaker first, as a method descriptor does. */
static PyObject *recovery_block_method_get(PyObject *op, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None) return Py_NewRef(op);
    return recovery_bound_new(obj, ((recovery_BlockMethod *)op)->call);
}

static PyObject *recovery_block_method_vectorcall(PyObject *op, PyObject *const *args,
                                                  size_t nargsf, PyObject *kwnames) {
    recovery_BlockMethod *self = (recovery_BlockMethod *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *result;
    if (nargs < 1) {
        PyErr_Format(PyExc_TypeError, "%s() needs the breaker", self->name);
        return NULL;
    }
    if (self->call(args[0], args + 1, nargs - 1, kwnames, &result) < 0) return NULL;
    return result;
}

static PyObject *recovery_block_method_signature(PyObject *op, void *closure) {
    return PyUnicode_FromString(((recovery_BlockMethod *)op)->signature);
}

static PyObject *recovery_block_method_name(PyObject *op, void *closure) {
    return PyUnicode_FromString(((recovery_BlockMethod *)op)->name);
}

static PyGetSetDef recovery_block_method_getset[] = {
    {"__text_signature__", recovery_block_method_signature, NULL, NULL, NULL},
    {"__name__", recovery_block_method_name, NULL, NULL, NULL},
    {"__qualname__", recovery_block_method_name, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef recovery_block_method_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(recovery_BlockMethod, vectorcall), READONLY,
     NULL},
    {NULL, 0, 0, 0, NULL},
};

static void recovery_block_method_dealloc(PyObject *op) {
    PyTypeObject *type = Py_TYPE(op);
    PyObject_Free(op);
    Py_DECREF(type);
}

static PyType_Slot recovery_block_method_slots[] = {
    {Py_tp_doc, "A with block's method of a breaker (__enter__ or __exit__)."},
    {Py_tp_call, (void *)PyVectorcall_Call},
    {Py_tp_descr_get, (void *)recovery_block_method_get},
    {Py_tp_getset, recovery_block_method_getset},
    {Py_tp_members, recovery_block_method_members},
    {Py_tp_dealloc, (void *)recovery_block_method_dealloc},
    {0, NULL},
};

static PyType_Spec recovery_block_method_spec = {
    "recovery._window.BlockMethod", sizeof(recovery_BlockMethod), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL, recovery_block_method_slots,
};

static int recovery_install_block_method(PyObject *window, const char *name,
                                         const char *signature, recovery_block_call_fn call) {
    int status;
    recovery_BlockMethod *method = PyObject_New(recovery_BlockMethod,
                                                recovery_block_method_type);
    if (method == NULL) return -1;
    method->vectorcall = recovery_block_method_vectorcall;
    method->call = call;
    method->name = name;
    method->signature = signature;
    status = PyDict_SetItemString(((PyTypeObject *)window)->tp_dict, name, (PyObject *)method);
    Py_DECREF(method);
    PyType_Modified((PyTypeObject *)window);
    return status;
}

#endif /* RECOVERY_WINDOW_GUARDS_H */
