"""SMS senders, chosen by the SMS_BACKEND setting (like Django's email backends).

- ``ConsoleSmsBackend``: development, the default; the text goes to the log.
- ``LocmemSmsBackend``: tests; messages are appended to ``outbox``.
- ``FileSmsBackend``: tests across processes; one JSON line per message in ``SMS_FILE_PATH``.
- ``TwilioSmsBackend`` and ``AliyunSmsBackend``: production, over httpx.

allauth calls the SMS hooks synchronously inside the request, so the senders are synchronous.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

#: Messages "sent" by LocmemSmsBackend: {"phone", "message", "params"}.
outbox: list[dict[str, Any]] = []


class SmsError(Exception):
    """The provider refused or failed to send a message."""


class BaseSmsBackend:
    #: Whether any text can be sent (False: only pre-approved templates with parameters).
    free_text = True

    def __init__(self, **options: Any) -> None:
        self.options = options

    def send(
        self, phone: str, message: str, *, template_params: dict[str, str] | None = None
    ) -> None:
        raise NotImplementedError


class ConsoleSmsBackend(BaseSmsBackend):
    def send(
        self, phone: str, message: str, *, template_params: dict[str, str] | None = None
    ) -> None:
        logger.warning("SMS to %s: %s", phone, message)


class LocmemSmsBackend(BaseSmsBackend):
    def send(
        self, phone: str, message: str, *, template_params: dict[str, str] | None = None
    ) -> None:
        outbox.append({"phone": phone, "message": message, "params": dict(template_params or {})})


class FileSmsBackend(BaseSmsBackend):
    """Appends each message as a JSON line to a file, for a test outside the server process.

    The path: the ``file_path`` option, else the ``SMS_FILE_PATH`` setting or environment
    variable (so ``SMS_BACKEND=accounts.sms.FileSmsBackend`` needs no other setting).
    """

    def __init__(self, *, file_path: str | os.PathLike[str] | None = None, **options: Any) -> None:
        super().__init__(**options)
        path = (
            file_path or getattr(settings, "SMS_FILE_PATH", None) or os.environ.get("SMS_FILE_PATH")
        )
        if not path:
            raise SmsError("FileSmsBackend needs a file_path option or SMS_FILE_PATH.")
        self.file_path = os.fspath(path)

    def send(
        self, phone: str, message: str, *, template_params: dict[str, str] | None = None
    ) -> None:
        line = json.dumps(
            {"phone": phone, "message": message, "params": dict(template_params or {})},
            ensure_ascii=False,
        )
        with open(self.file_path, "a", encoding="utf-8") as file:
            file.write(line + "\n")


class TwilioSmsBackend(BaseSmsBackend):
    """POST /2010-04-01/Accounts/{AccountSid}/Messages.json, HTTP Basic (AccountSid, AuthToken)."""

    base_url = "https://api.twilio.com"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not (from_number or messaging_service_sid):
            raise SmsError("Twilio needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID.")
        self.account_sid = account_sid
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.client = httpx.Client(
            base_url=self.base_url,
            auth=(account_sid, auth_token),
            timeout=timeout,
            transport=transport,
        )

    def send(
        self, phone: str, message: str, *, template_params: dict[str, str] | None = None
    ) -> None:
        data = {"To": phone, "Body": message}
        if self.messaging_service_sid:
            data["MessagingServiceSid"] = self.messaging_service_sid
        else:
            data["From"] = self.from_number or ""
        try:
            response = self.client.post(
                f"/2010-04-01/Accounts/{self.account_sid}/Messages.json", data=data
            )
        except httpx.HTTPError as exc:
            raise SmsError(f"Twilio unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("message", "")
            except ValueError:
                detail = ""
            raise SmsError(f"Twilio {response.status_code}: {detail[:200]}")


def _pct(value: object) -> str:
    """Aliyun POP percent-encoding: RFC 3986 unreserved characters kept, space as %20."""
    return quote(str(value), safe="-_.~")


class AliyunSmsBackend(BaseSmsBackend):
    """Aliyun Dysmsapi SendSms, RPC style, signature version 1.0 (HMAC-SHA1).

    Aliyun only sends pre-approved templates: the code travels in ``template_params``
    (``{"code": "123456"}``) and the template (ALIYUN_SMS_TEMPLATE_CODE) holds the wording.
    """

    endpoint = "https://dysmsapi.aliyuncs.com/"
    free_text = False

    def __init__(
        self,
        *,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        template_code: str,
        region_id: str = "cn-hangzhou",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.sign_name = sign_name
        self.template_code = template_code
        self.region_id = region_id
        self.client = httpx.Client(timeout=timeout, transport=transport)

    def sign(self, params: dict[str, str], method: str = "POST") -> str:
        canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(params.items()))
        string_to_sign = f"{method}&{_pct('/')}&{_pct(canonical)}"
        digest = hmac.new(
            f"{self.access_key_secret}&".encode(), string_to_sign.encode(), hashlib.sha1
        ).digest()
        return base64.b64encode(digest).decode()

    @staticmethod
    def format_number(phone: str) -> str:
        # Mainland numbers without the country code; others as country code + number.
        return phone.removeprefix("+86") if phone.startswith("+86") else phone.lstrip("+")

    def send(
        self, phone: str, message: str, *, template_params: dict[str, str] | None = None
    ) -> None:
        params = {
            "AccessKeyId": self.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": self.region_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
            "PhoneNumbers": self.format_number(phone),
            "SignName": self.sign_name,
            "TemplateCode": self.template_code,
            "TemplateParam": json.dumps(template_params or {}, ensure_ascii=False),
        }
        params["Signature"] = self.sign(params)
        try:
            response = self.client.post(self.endpoint, data=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SmsError(f"Aliyun unreachable or unreadable: {type(exc).__name__}") from exc
        if body.get("Code") != "OK":  # e.g. "isv.BUSINESS_LIMIT_CONTROL"
            raise SmsError(f"Aliyun {body.get('Code')}: {str(body.get('Message'))[:200]}")


_backend: tuple[object, BaseSmsBackend] | None = None


def get_sms_backend() -> BaseSmsBackend:
    """The configured sender (one instance per configuration, so httpx clients are reused)."""
    global _backend
    config = getattr(settings, "SMS_BACKEND", None) or {"BACKEND": "accounts.sms.ConsoleSmsBackend"}
    if isinstance(config, str):
        config = {"BACKEND": config}
    marker = (config["BACKEND"], json.dumps(config.get("OPTIONS", {}), sort_keys=True, default=str))
    if _backend is None or _backend[0] != marker:
        _backend = (marker, import_string(config["BACKEND"])(**config.get("OPTIONS", {})))
    return _backend[1]


def send_sms(phone: str, message: str, *, template_params: dict[str, str] | None = None) -> None:
    """Send one SMS through the configured backend (no budget check: see accounts.limits).

    A notice without template parameters is skipped by template-only providers (Aliyun).
    """
    backend = get_sms_backend()
    if template_params is None and not backend.free_text:
        logger.info("SMS notice to %s skipped: the provider only sends templates.", phone[:5])
        return
    backend.send(phone, message, template_params=template_params)
