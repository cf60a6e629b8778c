"""A priority plugin with bugs: one answer out of range, the other an exception."""

from vidretry.telegram.plugins import PriorityRequest


def request_priority(request: PriorityRequest) -> int:
    if request.user_id == 8:
        return 42
    raise KeyError(request.user_id)
