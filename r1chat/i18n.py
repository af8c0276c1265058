"""Translations the pages' scripts use, and the label suffix of forms.

- ``javascript_catalog``: Django's JavaScriptCatalog for the "djangojs" domain (strings written
  in static/js and found by ``makemessages -d djangojs``): ``gettext``, ``ngettext`` with the
  language's own plural rule, and ``interpolate``, as ``globalThis.django``. The chat page
  loads it as a classic script before its modules; static/js/chat/i18n.js wraps it. The
  "djangojs" domain keeps it small: the page's strings only, not the whole site's catalog.
- Django's forms and admin end labels with ``gettext(":")``, which Django's own Chinese
  catalog leaves as the ASCII colon; the project's catalog makes it the full-width "：".
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from django.views.i18n import JavaScriptCatalog

#: Named here so that `makemessages` keeps the entry in the project's catalog.
LABEL_SUFFIX = _(":")

javascript_catalog = JavaScriptCatalog.as_view(domain="djangojs")
