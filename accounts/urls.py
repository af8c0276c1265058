from __future__ import annotations

from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("", views.account, name="account"),
    path("verify/", views.verify, name="verify"),
    path("verify/required/", views.verify_required, name="verify_required"),
    path("waiting/", views.waiting, name="waiting"),
    path("invite/<str:token>/", views.invite, name="invite"),
    path("email/", views.change_contact, {"kind": "email"}, name="change_email"),
    path("email/confirm/", views.confirm_change, {"kind": "email"}, name="confirm_email"),
    path("phone/", views.change_contact, {"kind": "phone"}, name="change_phone"),
    path("phone/confirm/", views.confirm_change, {"kind": "phone"}, name="confirm_phone"),
    path("sessions/end/", views.sign_out_everywhere, name="sign_out_everywhere"),
    path("delete/", views.delete_account, name="delete"),
]
