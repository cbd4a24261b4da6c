"""Per-frame errors, rate-limited: at most one report per second, each with the count since the last
(issue 22, item 7b). The clock is the test's: counts, not sleeps."""

from __future__ import annotations

from perception.runtime.error_rate import ErrorRate

S = 10**9


def test_errors_within_a_second_are_counted_into_the_next_report() -> None:
    now = [0]
    rate = ErrorRate(lambda: now[0])
    published = []
    for t, frame in [(0.0, 1), (0.2, 2), (0.5, 3), (0.99, 4), (1.0, 5), (1.1, 6), (3.0, 7)]:
        now[0] = int(t * S)
        report = rate.add(f"frame {frame}: bad")
        if report is not None:
            published.append((t, report.count, report.detail))
    assert published == [(0.0, 1, "frame 1: bad"), (1.0, 4, "frame 5: bad"), (3.0, 2, "frame 7: bad")]
    assert rate.flush() is None  # nothing pending


def test_a_pending_count_goes_out_once_the_second_has_passed_even_without_a_new_error() -> None:
    now = [0]
    rate = ErrorRate(lambda: now[0])
    assert rate.add("frame 0: bad") is not None
    for frame in range(1, 30):  # 29 more within the second: one report's worth
        now[0] = frame * S // 60
        assert rate.add(f"frame {frame}: bad") is None
    assert rate.due() is None
    now[0] = S
    report = rate.due()
    assert report is not None and report.count == 29 and report.detail == "frame 29: bad"
    assert report.text() == "frame 29: bad (and 28 more since the last error status)"
    assert rate.due() is None


def test_the_end_of_a_run_flushes_what_is_pending() -> None:
    rate = ErrorRate(lambda: 0)
    assert rate.add("frame 0: bad") is not None
    assert [rate.add(f"frame {i}: bad") for i in range(1, 4)] == [None] * 3
    report = rate.flush()
    assert report is not None and report.count == 3
    assert report.text().endswith("(and 2 more since the last error status)")
