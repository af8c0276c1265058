"""The strings of the page's keyboard, input-limit, sidebar-state and Undo scripts
(static/js/chat/shortcuts.js, longtext.js, state.js), translated once a page beside
`views.js_strings`."""

from __future__ import annotations

from django.utils.translation import gettext as _


def keyboard_strings() -> dict[str, str]:
    return {
        "shortcuts_title": _("Keyboard shortcuts"),
        "shortcut_search": _("Search chats"),
        "shortcut_new_chat": _("New chat"),
        "shortcut_stop": _("Stop the answer"),
        "shortcut_edit_last": _("Edit your last message (in an empty message box)"),
        "shortcut_send": _("Send"),
        "shortcut_newline": _("New line"),
        "shortcut_help": _("Show keyboard shortcuts"),
        "close": _("Close"),
        "too_long": _(
            "This message is too long to send: shorten it to %(limit)s characters or fewer."
        ),
        "show_more": _("Show more"),
        "show_less": _("Show less"),
        "undo": _("Undo"),
        "restored": _("Chat restored."),
        "restore_failed": _("The chat could not be restored: its time for Undo has passed."),
        "generating": _("Writing an answer…"),
        "connection_lost": _(
            "The connection to the server was lost while the answer was being written."
        ),
    }
