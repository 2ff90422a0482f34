"""Generates the conformance matrix: one cc_test per scheduler x channel x
event loop in backends/backends.bzl, each running the groups linked into it
on that combination (conformance_main.cc picks the backends from the
registry by the names in its arguments)."""

load("//backends:backends.bzl", "CHANNELS", "EVENT_LOOPS", "SCHEDULERS")

def combination_name(combination):
    """"<scheduler>_<channel>_<loop>" for a (scheduler, channel, loop) tuple."""
    return "%s_%s_%s" % combination

def combinations():
    """Every combination as (scheduler, channel, loop), schedulers outermost."""
    return [
        (scheduler, channel, loop)
        for scheduler in SCHEDULERS
        for channel in CHANNELS
        for loop in EVENT_LOOPS
    ]

def combination_args(combination):
    """The arguments that make conformance_main.cc run `combination`."""
    scheduler, channel, loop = combination
    return [
        "--scheduler=" + scheduler,
        "--channel=" + channel,
        "--event_loop=" + loop,
    ]

def conformance_matrix(groups, suffix = "_test", **kwargs):
    """One cc_test per combination, named <scheduler>_<channel>_<loop><suffix>.

    Args:
      groups: the alwayslink test-group libraries every target links.
      suffix: appended to each target's name.
      **kwargs: passed to every cc_test (deps are added to the groups).
    """
    deps = kwargs.pop("deps", [])
    names = []
    for combination in combinations():
        name = combination_name(combination) + suffix
        native.cc_test(
            name = name,
            args = combination_args(combination),
            deps = groups + deps + [
                "//tests/conformance:main",
            ],
            **kwargs
        )
        names.append(name)
    return names
