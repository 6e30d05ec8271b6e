"""BASIC interpreter benchmark: statements per second and suspend/resume time at HEAR.

Run: .venv/bin/python -m bench.bench_basic
Target: resume < 1 ms excluding storage. The interpreter's speed is given as a
ratio against the same loop written in Python, run in the same process; each
figure is the median of five runs.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

from basic import Interpreter, Limits, compile_source

LOOP = """
total = 0
FOR i = 1 TO 20000
    IF i MOD 2 = 0 THEN
        total = total + i
    ELSE
        s = "odd ${i}"
    END IF
NEXT
"""

DIALOG = """
TALK "Hello! What is your name?"
HEAR name AS NAME
FOR EACH item IN ["a", "b", "c"]
    x = item + name
NEXT
TALK "Hi ${name}, your email?"
HEAR email AS EMAIL
TALK "Thanks"
"""


class SilentHost:
    async def talk(self, text: str) -> None:
        pass

    def add_suggestion(self, key: str, label: str) -> None:
        pass

    def clear_suggestions(self) -> None:
        pass


async def python_loop() -> None:
    """The baseline: LOOP written in Python, in a coroutine as the interpreter runs."""
    total = 0
    s = ""
    for i in range(1, 20001):
        if i % 2 == 0:
            total = total + i
        else:
            s = f"odd {i}"
    del s, total


async def timed(run: object) -> float:
    began = time.perf_counter()
    await run  # type: ignore[misc]
    return time.perf_counter() - began


async def main() -> None:
    loop = compile_source(LOOP, "loop.bas")
    limits = Limits(max_steps=10**9, max_loop_iterations=10**9, wall_time=60)
    interpreter = Interpreter({"loop": loop}, SilentHost(), limits=limits)
    basic = statistics.median([await timed(interpreter.start("loop")) for _ in range(5)])
    python = statistics.median([await timed(python_loop()) for _ in range(5)])
    statements = 20000 * 3  # IF, assignment, NEXT per iteration
    print(f"statements/s: {statements / basic:,.0f} ({basic * 1000:.1f} ms for {statements})")
    print(
        f"the same loop in Python: {python * 1000:.1f} ms; "
        f"ratio interpreter/Python speed {python / basic:.3f}"
    )

    dialog = compile_source(DIALOG, "start.bas")
    interpreter = Interpreter({"start": dialog}, SilentHost())
    suspend, resume = [], []
    for _ in range(2000):
        began = time.perf_counter()
        outcome = await interpreter.start()
        suspend.append(time.perf_counter() - began)
        state = json.loads(json.dumps(outcome.state))
        began = time.perf_counter()
        await interpreter.resume(state, "ana maria")  # runs to the next HEAR and suspends
        resume.append(time.perf_counter() - began)

    def ms(values: list[float], q: int) -> str:
        return f"{statistics.quantiles(values, n=100)[q - 1] * 1000:.3f} ms"

    print(f"start to first HEAR: p50 {ms(suspend, 50)}, p99 {ms(suspend, 99)}")
    print(
        f"resume at HEAR to the next HEAR: p50 {ms(resume, 50)}, p99 {ms(resume, 99)}"
        " (target < 1 ms)"
    )
    size = len(json.dumps(outcome.state))
    print(f"state size at HEAR: {size} bytes of JSON")


if __name__ == "__main__":
    asyncio.run(main())
