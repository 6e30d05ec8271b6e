"""The load generator's users: in a pool, each request from a random user not waiting for
an answer (as wrk's script draws them), and the same users again in later phases."""

from __future__ import annotations

import orjson

from bench.bench_web import _Users


def test_a_pool_hands_out_each_user_once_until_answered() -> None:
    users = _Users("p", ["hello"], pool=50)
    taken = [users.take() for _ in range(50)]
    assert len({u.uid for u in taken}) == 50  # nobody twice while in flight
    assert {u.uid for u in taken} == {f"p-{i}" for i in range(1, 51)}
    for user in taken[:10]:
        users.answered(user, "s-" + user.uid)
    again = {users.take().uid for _ in range(10)}
    assert again == {u.uid for u in taken[:10]}  # only the answered ones come back


def test_a_pool_draws_at_random_and_counts_each_users_first_answer_as_a_session() -> None:
    users = _Users("p", ["hello"], pool=2000)
    order = []
    for _ in range(200):
        user = users.take()
        order.append(int(user.uid.split("-")[1]))
        users.answered(user, "s")
    assert order != sorted(order) and max(order) > 200  # not in turn
    assert users.sessions == len(set(order))


def test_a_pools_requests_name_the_user_not_the_session() -> None:
    users = _Users("p", ["hello"], pool=1)
    user = users.take()
    users.answered(user, "s-1")
    body = orjson.loads(users.body(users.take()))
    assert body == {"user_id": "p-1", "text": "hello"}


def test_without_a_pool_users_go_through_their_dialog_and_are_replaced() -> None:
    users = _Users("d", ["hi", "ada"])
    first = users.take()
    assert orjson.loads(users.body(first)) == {"user_id": "d-1", "text": "hi", "session_id": None}
    users.answered(first, "s-1")
    assert orjson.loads(users.body(users.take())) == {
        "user_id": "d-1",
        "text": "ada",
        "session_id": "s-1",
    }
    users.answered(first, "s-1")
    assert users.dialogs == 1 and users.take().uid == "d-2"
