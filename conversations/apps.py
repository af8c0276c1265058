from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = _("Conversations")

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_migrate, post_save

        from .models import Backend, ModelCapability
        from .turns import catalog

        post_save.connect(catalog.backends_changed, sender=Backend, dispatch_uid="backends-saved")
        post_delete.connect(
            catalog.backends_changed, sender=Backend, dispatch_uid="backends-deleted"
        )
        for signal in (post_save, post_delete):
            signal.connect(
                catalog.learned_changed, sender=ModelCapability, dispatch_uid=f"learned-{signal}"
            )
        from review.models import UserQuota

        from .turns.actions import quota_changed

        post_save.connect(quota_changed, sender=UserQuota, dispatch_uid="quota-saved")
        post_delete.connect(quota_changed, sender=UserQuota, dispatch_uid="quota-deleted")
        from .search.index import ensure_sqlite_index

        post_migrate.connect(ensure_sqlite_index, sender=self, dispatch_uid="search-index")
