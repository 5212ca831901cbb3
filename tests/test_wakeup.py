"""A wait that a signal handler cuts short: how a daemon notices SIGTERM at once instead of when its wait ends."""

import signal
import threading

from edgeface.wakeup import Wakeup


def test_a_signal_handler_ends_the_wait():
    wakeup = Wakeup()
    previous = signal.signal(signal.SIGALRM, lambda number, frame: wakeup.wake())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        assert wakeup.wait(60)  # a wait Python would resume after the handler, were it a sleep
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_wake_from_another_thread_before_the_wait_is_kept_for_it_and_then_spent():
    wakeup = Wakeup()
    waker = threading.Thread(target=lambda: [wakeup.wake() for _ in range(100_000)])  # more than a pipe holds
    waker.start()
    waker.join()
    assert wakeup.wait(60)
    assert not wakeup.wait(0)
