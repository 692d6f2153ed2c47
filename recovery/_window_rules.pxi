# Part of recovery/_window.pyx (included there, one extension module): the settings a window
# takes from its config, shared by the windows of equal configs.

cdef class _Rules:
    """What a window takes from its config: the numbers (``Settings``) and the exception
    matchers. Immutable, so every window of an equal config shares one (``_rules_of``):
    a breaker carries a pointer, not a copy."""

    cdef Settings settings
    cdef object record_types, ignore_types     # exception classes: one isinstance each
    cdef object record_tests, ignore_tests     # predicates fn(exc) -> bool, beside them
    cdef bint has_ignore, has_ignore_tests, has_record_tests
    cdef object __weakref__

    def __init__(self, config):
        self.settings = window_settings(config)
        if not 0 < self.settings.trial_limit <= SLOT_BITS:  # the token's slot bits: never overrun
            raise ValueError(
                f"half_open_max_calls must be <= {SLOT_BITS}, got {self.settings.trial_limit}"
            )
        self.record_types, self.record_tests = split_matchers(config.record_exceptions)
        self.ignore_types, self.ignore_tests = split_matchers(config.ignore_exceptions)
        self.has_ignore = len(self.ignore_types) > 0
        self.has_ignore_tests = len(self.ignore_tests) > 0
        self.has_record_tests = len(self.record_tests) > 0


# config -> its _Rules, while some window uses them.
_shared_rules = weakref.WeakValueDictionary()


cdef _Rules _rules_of(config):
    cdef _Rules rules
    try:
        found = _shared_rules.get(config)
    except TypeError:  # a config holding an unhashable predicate: not shared
        return _Rules(config)
    if found is not None:
        return <_Rules>found
    rules = _Rules(config)
    _shared_rules[config] = rules
    return rules
