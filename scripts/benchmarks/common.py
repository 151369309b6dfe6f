"""What every measure shares: the error that says a measure could not be taken, medians and formatting."""
import statistics


class CannotMeasure(Exception):
    pass


def median(xs):
    return statistics.median(xs) if xs else None


def fmt_ms(s):
    if s is None:
        return "—"
    return f"{s:.2f} s" if s >= 1 else f"{s * 1000:.0f} ms" if s >= 0.1 else f"{s * 1000:.1f} ms"


def fmt_s(s):
    return "—" if s is None else f"{s:.2f} s"


def ms_list(xs):
    return ", ".join(f"{x * 1000:.0f}" for x in xs)


def median_of_rounds(xs):
    """The median over all rounds of a bounded wait, a round that saw nothing (None) counting as more than the
    bound; None when half the rounds or more saw nothing."""
    seen = [x for x in xs if x is not None]
    if len(seen) * 2 <= len(xs):
        return None
    return median([x if x is not None else float("inf") for x in xs])
