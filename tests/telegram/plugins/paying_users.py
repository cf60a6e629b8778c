"""An operator's priority plugin, as docs/bot.md shows it: paying users' videos first."""

from vidretry.telegram.plugins import PriorityRequest

PAYING = {7, 8}  # a real bot would look its subscribers up


async def request_priority(request: PriorityRequest) -> int:
    if request.is_admin:
        return 9
    return 5 if request.user_id in PAYING else 0
