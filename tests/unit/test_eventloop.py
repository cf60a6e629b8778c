import asyncio

from vidretry import eventloop


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_worker_runs_on_uvloop_and_everything_else_on_asyncio() -> None:
    assert eventloop.run(loop_module(), fast=True).startswith("uvloop")
    assert eventloop.run(loop_module()).startswith("asyncio")
