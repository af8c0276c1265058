"""Channel-layer group names shared by the apps."""

from __future__ import annotations


def user_group(user_id: int) -> str:
    """The channel-layer group every socket of one user joins."""
    return f"user.{user_id}"
