"""FileSmsBackend: the sender the browser tests read codes from (one JSON line per message)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import override_settings

from accounts import sms


def test_file_backend_appends_json_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sms.jsonl"
    monkeypatch.setattr(sms, "_backend", None)
    monkeypatch.setenv("SMS_FILE_PATH", str(path))  # as the live server gets it
    with override_settings(SMS_BACKEND="accounts.sms.FileSmsBackend"):
        sms.send_sms("+8613800138000", "Your r1chat code is 123456.", template_params={"code": "1"})
        sms.send_sms("+8613800138001", "Notice: 你好")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {
            "phone": "+8613800138000",
            "message": "Your r1chat code is 123456.",
            "params": {"code": "1"},
        },
        {"phone": "+8613800138001", "message": "Notice: 你好", "params": {}},
    ]
    monkeypatch.delenv("SMS_FILE_PATH")
    with pytest.raises(sms.SmsError):
        sms.FileSmsBackend()
    assert sms.FileSmsBackend(file_path=path).file_path == str(path)
