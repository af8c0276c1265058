"""Close a user's sockets when their access changes: sign-out, deactivation, password change or
reset, "sign out everywhere", deletion. Deactivation also stops the user's running answers.

A save of one user goes through the signals below; an update of many at once (an admin bulk
action, ``User.objects.filter(...).update(is_active=False)``, ``bulk_update``) sends no
model signal and goes through ``accounts.models.UserQuerySet.update`` instead, which sends
``access_changed`` (handled at the end of this module)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from .access import close_user_sockets
from .models import access_changed

User = get_user_model()
TRACKED = ("password", "is_active", "session_epoch")


@receiver(user_logged_out)
def _on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None and user.pk:
        close_user_sockets(user.pk)


@receiver(pre_save, sender=User)
def _remember_access_change(
    sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any
) -> None:
    instance._r1chat_revoke = False
    instance._r1chat_deactivated = False
    if instance.pk is None or kwargs.get("raw"):
        return
    if update_fields is not None and not set(update_fields) & set(TRACKED):
        return  # e.g. last_login on every sign-in: no extra query
    old = User.objects.filter(pk=instance.pk).values_list(*TRACKED).first()
    if old is None:
        return
    password, was_active, epoch = old
    instance._r1chat_deactivated = bool(was_active and not instance.is_active)
    instance._r1chat_revoke = (
        password != instance.password
        or instance._r1chat_deactivated
        or epoch != instance.session_epoch
    )


@receiver(post_save, sender=User)
def _revoke_after_save(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if getattr(instance, "_r1chat_revoke", False):
        instance._r1chat_revoke = False
        user_id, stop = instance.pk, getattr(instance, "_r1chat_deactivated", False)
        transaction.on_commit(lambda: close_user_sockets(user_id, stop_generations=stop))


@receiver(post_delete, sender=User)
def _revoke_after_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    user_id = instance.pk
    transaction.on_commit(lambda: close_user_sockets(user_id))


@receiver(access_changed, dispatch_uid="accounts.access_changed")
def _access_changed(sender: Any, revoked: set[int], deactivated: set[int], **kwargs: Any) -> None:
    """A queryset update of access fields (accounts.models.UserQuerySet)."""
    for user_id in sorted(revoked):
        close_user_sockets(user_id, stop_generations=user_id in deactivated)
