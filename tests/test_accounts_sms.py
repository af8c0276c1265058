"""SMS senders at their HTTP boundary (httpx.MockTransport) and the backend choice."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from accounts import sms
from accounts.sms import AliyunSmsBackend, SmsError, TwilioSmsBackend


def recorder(status: int, body: dict[str, Any]) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    return seen, httpx.MockTransport(handler)


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def test_twilio_request_shape_and_basic_auth() -> None:
    seen, transport = recorder(201, {"sid": "SM1"})
    backend = TwilioSmsBackend(
        account_sid="AC123", auth_token="tok", from_number="+15005550006", transport=transport
    )
    backend.send("+8613800138000", "Your code is 123456")
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"AC123:tok").decode()
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(request) == {
        "To": "+8613800138000",
        "Body": "Your code is 123456",
        "From": "+15005550006",
    }


def test_twilio_messaging_service_and_error() -> None:
    seen, transport = recorder(400, {"code": 21211, "message": "Invalid 'To' Phone Number"})
    backend = TwilioSmsBackend(
        account_sid="AC1", auth_token="t", messaging_service_sid="MG9", transport=transport
    )
    with pytest.raises(SmsError, match="Invalid 'To'"):
        backend.send("+15550001111", "hi")
    assert form(seen[0])["MessagingServiceSid"] == "MG9"
    assert "From" not in form(seen[0])


def test_aliyun_signature_reproduces_published_example() -> None:
    backend = AliyunSmsBackend(
        access_key_id="testId", access_key_secret="testSecret", sign_name="s", template_code="t"
    )
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert backend.sign(params, "GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_aliyun_request_shape_and_signature() -> None:
    seen, transport = recorder(200, {"Code": "OK", "Message": "OK", "BizId": "1"})
    backend = AliyunSmsBackend(
        access_key_id="AK",
        access_key_secret="SECRET",
        sign_name="r1chat",
        template_code="SMS_1",
        transport=transport,
    )
    backend.send("+8613800138000", "ignored", template_params={"code": "123456"})
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "https://dysmsapi.aliyuncs.com/"
    sent = form(request)
    assert sent["PhoneNumbers"] == "13800138000"
    assert sent["Action"] == "SendSms" and sent["Version"] == "2017-05-25"
    assert sent["AccessKeyId"] == "AK" and sent["SignatureMethod"] == "HMAC-SHA1"
    assert json.loads(sent["TemplateParam"]) == {"code": "123456"}
    signature = sent.pop("Signature")
    assert signature == backend.sign(sent, "POST")  # authentication: the request is signed


def test_aliyun_error_code_raises() -> None:
    _, transport = recorder(200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "limit"})
    backend = AliyunSmsBackend(
        access_key_id="AK",
        access_key_secret="S",
        sign_name="s",
        template_code="t",
        transport=transport,
    )
    with pytest.raises(SmsError, match="BUSINESS_LIMIT_CONTROL"):
        backend.send("+8613800138000", "x", template_params={"code": "1"})


def test_template_only_provider_skips_free_text_notice(settings: Any) -> None:
    seen, transport = recorder(200, {"Code": "OK"})
    settings.SMS_BACKEND = {
        "BACKEND": "accounts.sms.AliyunSmsBackend",
        "OPTIONS": {
            "access_key_id": "AK",
            "access_key_secret": "S",
            "sign_name": "s",
            "template_code": "t",
            "transport": transport,
        },
    }
    sms.send_sms("+8613800138000", "notice without a code")
    assert seen == []
    sms.send_sms("+8613800138000", "code", template_params={"code": "123456"})
    assert len(seen) == 1


def test_locmem_backend_is_the_test_default() -> None:
    sms.outbox.clear()
    sms.send_sms("+8613800138000", "hello")
    assert sms.outbox == [{"phone": "+8613800138000", "message": "hello", "params": {}}]
    sms.outbox.clear()
