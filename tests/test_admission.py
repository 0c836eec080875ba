"""ui/admission.py: which sessions the studio serves at once (the crowd itself: tests/test_crowd.py)."""

import threading

from ui.admission import Admission


def test_sessions_past_the_limit_are_turned_away_until_one_disconnects():
    admission, connected = Admission(), {"a", "b", "c"}
    alive = connected.__contains__
    assert admission.admit("a", 2, alive) and admission.admit("b", 2, alive)
    assert not admission.admit("c", 2, alive)
    assert admission.admit("a", 2, alive)  # an admitted session stays admitted
    connected.discard("b")
    assert admission.admit("c", 2, alive)  # b's place, once its tab is gone
    assert not admission.admit("d", 2, alive)


def test_many_threads_admitting_at_once_never_pass_the_limit():
    admission, admitted = Admission(), []
    start = threading.Barrier(40)

    def arrive(number: int) -> None:
        start.wait()
        if admission.admit(f"session-{number}", 7, lambda _: True):
            admitted.append(number)

    threads = [threading.Thread(target=arrive, args=(number,)) for number in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 7
