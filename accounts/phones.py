"""Phone numbers: one spelling (E.164) everywhere, and the SMS country allowlist."""

from __future__ import annotations

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


def normalize_phone(raw: str) -> str:
    """E.164 for any way of writing a number ("+86 138 0013 8000", "13800138000", ...).

    Numbers without a country code are read in PHONE_DEFAULT_REGION. Raises ValidationError.
    """
    value = (raw or "").strip()
    if value.startswith("00"):
        value = "+" + value[2:]
    try:
        number = phonenumbers.parse(value, settings.PHONE_DEFAULT_REGION or None)
    except phonenumbers.NumberParseException:
        raise ValidationError(_("Enter a valid phone number."), code="invalid_phone") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(_("Enter a valid phone number."), code="invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def try_normalize_phone(raw: str) -> str | None:
    try:
        return normalize_phone(raw)
    except ValidationError:
        return None


def sms_country_allowed(phone: str) -> bool:
    """Whether SMS may go to this (E.164) number: SMS_ALLOWED_COUNTRIES, "*" allows all."""
    allowed = [item.strip().upper() for item in settings.SMS_ALLOWED_COUNTRIES if item.strip()]
    if "*" in allowed:
        return True
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return False
    region = phonenumbers.region_code_for_number(number) or ""
    calling = f"+{number.country_code}"
    return any(item in {region, calling, calling[1:]} for item in allowed)


def check_sms_country(phone: str) -> None:
    if not sms_country_allowed(phone):
        raise ValidationError(
            _("Text messages cannot be sent to numbers in this country."),
            code="country_not_allowed",
        )


def display_phone(phone: str) -> str:
    """A readable international spelling, for pages (never for lookups)."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return phone
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
