"""Settings of the browser tests' live server: r1chat's own, with mail written to files.

The server runs in another process, so the test cannot read an in-memory outbox: with
R1CHAT_EMAIL_FILE_PATH set, every message goes to a file in that folder (Django's file-based
backend), where the signup test reads the code. SMS go to a file through SMS_BACKEND and
SMS_FILE_PATH (accounts.sms.FileSmsBackend) without a settings module of their own.
"""

from __future__ import annotations

import os

from r1chat.settings import *  # noqa: F403

if os.environ.get("R1CHAT_EMAIL_FILE_PATH"):
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "OPTIONS": {"file_path": os.environ["R1CHAT_EMAIL_FILE_PATH"]},
        }
    }
