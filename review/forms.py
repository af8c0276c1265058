from __future__ import annotations

import datetime as dt

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .models import Feedback

MAX_USAGE_DAYS = 366


class FeedbackForm(forms.Form):
    """A thumbs up or down on an answer; "none" takes a rating back."""

    rating = forms.ChoiceField(choices=[*Feedback.Rating.choices, ("none", _("no rating"))])
    reason = forms.CharField(required=False, max_length=1000, strip=True)


class UsageFilterForm(forms.Form):
    start = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput({"type": "date"})
    )
    end = forms.DateField(label=_("To"), required=False, widget=forms.DateInput({"type": "date"}))
    user = forms.IntegerField(required=False, widget=forms.HiddenInput)
    model = forms.CharField(label=_("Model"), required=False, max_length=200)
    by = forms.ChoiceField(
        label=_("Chart by"),
        required=False,
        choices=[("model", _("model")), ("user", _("user"))],
    )

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        today = timezone.localdate()
        end = data.get("end") or today
        start = data.get("start") or end - dt.timedelta(days=29)
        if start > end:
            start, end = end, start
        if (end - start).days >= MAX_USAGE_DAYS:
            raise forms.ValidationError(
                _("Choose at most %(days)d days."), params={"days": MAX_USAGE_DAYS}
            )
        data.update(start=start, end=end, by=data.get("by") or "model")
        return data
