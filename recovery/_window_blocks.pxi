# Part of recovery/_window.pyx (included there, one extension module): the admissions of the
# with and async with blocks open in each context.

cdef struct Block:
    PyObject* breaker     # a strong reference
    long long token
    double start


cdef class _Blocks:
    """The ``with`` and ``async with`` blocks open in one context, innermost last.

    Kept per context, not per thread: a thread runs in a context of its own, and so
    does each asyncio task, so concurrent tasks on one thread each exit their own
    block (a ``with`` that spans an ``await`` included). A context copied for a new
    task still refers to its parent's blocks, so ``owner`` says whose they are; it is
    the context's address, not a reference (that would make a cycle through the
    context and keep everything in it alive until the garbage collector runs): a
    context that dies with blocks open leaves them to be adopted by a later one, but
    never shared by two live ones.
    """

    cdef PyObject* owner
    cdef Block* items
    cdef Py_ssize_t depth, capacity

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.depth):
            Py_DECREF(<object>self.items[i].breaker)
        PyMem_Free(self.items)

    cdef int reserve(self) except -1:
        """Room for one more block."""
        cdef Block* grown
        if self.depth == self.capacity:
            grown = <Block*>PyMem_Realloc(self.items, (self.capacity * 2 + 4) * sizeof(Block))
            if grown == NULL:
                raise MemoryError()
            self.items = grown
            self.capacity = self.capacity * 2 + 4
        return 0

    cdef void push(self, object breaker, long long token, double start) noexcept:
        """Add a block, in the room ``reserve`` made."""
        Py_INCREF(breaker)
        self.items[self.depth].breaker = <PyObject*>breaker
        self.items[self.depth].token = token
        self.items[self.depth].start = start
        self.depth += 1

    cdef Py_ssize_t find(self, object breaker) noexcept:
        """The innermost block of ``breaker``, or -1."""
        cdef Py_ssize_t i = self.depth - 1
        while i >= 0 and self.items[i].breaker != <PyObject*>breaker:
            i -= 1
        return i

    cdef void take(self, Py_ssize_t index, long long* token, double* start) noexcept:
        """Remove block ``index`` (usually the innermost), giving its admission."""
        cdef PyObject* breaker = self.items[index].breaker
        token[0] = self.items[index].token
        start[0] = self.items[index].start
        self.depth -= 1
        if index < self.depth:
            memmove(&self.items[index], &self.items[index + 1],
                    (self.depth - index) * sizeof(Block))
        Py_DECREF(<object>breaker)


_blocks_var = contextvars.ContextVar("recovery_blocks")


cdef _Blocks _blocks(bint create):
    """The current context's blocks (None if it has none and ``create`` is False)."""
    cdef PyObject* found = NULL
    cdef _Blocks blocks
    PyContextVar_Get(_blocks_var, NULL, &found)
    if found != NULL:
        blocks = <_Blocks>found
        Py_DECREF(<object>found)  # PyContextVar_Get's new reference; the var holds one
        if blocks.owner == PyThreadState_Get().context:
            return blocks
    if not create:
        return None
    blocks = _Blocks()
    PyContextVar_Set(_blocks_var, blocks)  # makes the thread's context if it had none
    blocks.owner = PyThreadState_Get().context
    return blocks
