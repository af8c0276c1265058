"""HSTS preload is opt-in (R1CHAT_HSTS_PRELOAD), and the deploy check stays clean either way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

SCRIPT = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "from django.test import RequestFactory; "
    "from django.middleware.security import SecurityMiddleware; "
    "from django.http import HttpResponse; "
    "r = SecurityMiddleware(lambda req: HttpResponse())(RequestFactory().get('/', secure=True, "
    "HTTP_HOST='chat.example.com')); "
    "print(json.dumps({'preload': s.SECURE_HSTS_PRELOAD, "
    "'header': r.headers.get('Strict-Transport-Security')}))"
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(BASE_DIR),
        "DJANGO_SETTINGS_MODULE": "r1chat.settings",
        "R1CHAT_DATA_DIR": str(tmp_path / "data"),
        "DEBUG": "0",
        "SECRET_KEY": "x" * 60 + "-production-like-secret-key",
        "ALLOWED_HOSTS": "chat.example.com",
        "EMAIL_HOST": "smtp.example.com",
    }
    for name in ("DATABASE_URL", "REDIS_URL"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update(extra)
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("value", "preload"), [(None, False), ("0", False), ("1", True), ("true", True)]
)
def test_hsts_preload_is_opt_in(tmp_path: Path, value: str | None, preload: bool) -> None:
    extra = {} if value is None else {"R1CHAT_HSTS_PRELOAD": value}
    env = _env(tmp_path, **extra)
    result = _run(env, "-c", SCRIPT)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["preload"] is preload
    header = values["header"]
    assert header.startswith("max-age=31536000; includeSubDomains")
    assert ("preload" in header) is preload
    # Production settings pass the deploy check with preload on or off.
    check = _run(env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert check.returncode == 0, check.stdout + check.stderr
