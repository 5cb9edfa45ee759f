"""The messages of asteps' own errors: they say what happened in a bounded
number of characters, however much the store had to say."""

from __future__ import annotations

from asteps.errors import MAX_REASON_CHARS, MAX_REASONS_SHOWN, UnmarkError


def test_an_unmark_error_of_many_long_reasons_has_a_bounded_message() -> None:
    """Every marker failed for a reason of its own, each a page long (a store
    may quote what it was told per key): the message shows the first reasons,
    each cut short, and counts the others, yet still says how many markers
    were not removed and names the first; ``.not_removed`` keeps them all."""
    wanted = [f"n.{i:04d}" for i in range(2000)]
    failed = {name: f"refused {name}: " + "x" * 5000 for name in wanted[:1500]}
    error = UnmarkError.of("store 's'", wanted, failed, prefix="wf/steps/")
    message = str(error)
    assert len(message) < 200 + MAX_REASONS_SHOWN * (MAX_REASON_CHARS + 20) + 300
    assert message.startswith("1,500 of 2,000 marker(s) in store 's' were not removed")
    assert f"and {1500 - MAX_REASONS_SHOWN:,} other reasons" in message
    assert "not removed: 'n.0000', 'n.0001', 'n.0002', 'n.0003', 'n.0004' and 1,495 more" in message
    assert error.not_removed == wanted[:1500]


def test_an_unmark_error_shows_the_most_frequent_reasons_first_and_whole_when_short() -> None:
    """Reasons are grouped (reason -> count), the most frequent first: the
    reason most markers share is never among those left out."""
    wanted = [f"n.{i}" for i in range(10)]
    failed = {name: f"odd {name}" for name in wanted[: MAX_REASONS_SHOWN + 1]}
    failed.update(dict.fromkeys(wanted[MAX_REASONS_SHOWN + 1 :], "denied"))
    message = str(UnmarkError.of("here", wanted, failed, prefix="p/"))
    shared = 10 - MAX_REASONS_SHOWN - 1
    assert f"is known to be removed: {shared:,} as denied; 1 as odd n.0;" in message
    assert "and 2 other reasons" in message
    assert f"odd n.{MAX_REASONS_SHOWN}" not in message


def test_an_unmark_error_that_removed_nothing_does_not_say_the_others_were() -> None:
    """When no marker was removed, there are no "others" to speak of: the
    message says all were left, and nothing about markers removed."""
    wanted = ["a", "b"]
    message = str(UnmarkError.of("here", wanted, dict.fromkeys(wanted, "denied"), prefix="p/"))
    assert message.startswith(
        "none of the 2 marker(s) in here is known to be removed: 2 as denied;"
    )
    assert "the others were" not in message
