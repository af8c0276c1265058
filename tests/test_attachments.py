"""Attachments: files uploaded over HTTP before their question, read by content, sent with the
question in the one template (conversations.attachments), kept with the message, shown on the
page, in the thread JSON and in admin review. Model servers are the simulator on loopback."""

from __future__ import annotations

import base64
import io
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

# (first, so Django's logging set-up, which importing the application runs, is not redone
# inside a test: it would take pytest's log capture off the root logger)
import r1chat.asgi  # noqa: F401
from conversations import attachments
from conversations.models import Attachment, Message
from conversations.simulator import Scenario
from tests.chat_support import (  # noqa: F401 (autouse fixtures: they apply to this module)
    Tab,
    fresh_layer_and_clients,
    generations_end_before_the_database_is_emptied,
    make_backend,
    make_user,
)

pytestmark = pytest.mark.django_db(transaction=True)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
CODE = 'def greet(name: str) -> str:\n    return f"Hello, {name}!"\n'


def make_pdf(pages: list[str]) -> bytes:
    """A small valid PDF with one line of Helvetica text on each page (offsets computed)."""
    count = len(pages)
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: (
            "<< /Type /Pages /Kids ["
            + " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
            + f"] /Count {count} >>"
        ).encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for i, text in enumerate(pages):
        page, content = 4 + 2 * i, 5 + 2 * i
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects[page] = (
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>"
        ).encode()
        objects[content] = (
            f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n".encode() + objects[number] + b"\nendobj\n"
    xref = len(out)
    size = max(objects) + 1
    out += f"xref\n0 {size}\n0000000000 65535 f \n".encode()
    for number in range(1, size):
        out += f"{offsets[number]:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def encrypted_pdf() -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Secret plans"]))))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
async def orm_thread_closes_its_connection():
    """The ORM's thread for async code keeps the connection its last query opened (Channels
    closes it only before a consumer's next handler): closed after each test, it does not
    outlive the test database (PostgreSQL refuses to drop a database in use)."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


@pytest.fixture
def alice() -> Any:
    # Alice attaches files; Bob may use none of them.
    return make_user("alice")


@pytest.fixture
def bob() -> Any:
    return make_user("bob")


def client_for(user: Any, **extra: Any) -> Client:
    client = Client(**extra)
    client.force_login(user)
    return client


def upload(client: Client, name: str, data: bytes, **fields: Any) -> Any:
    return client.post(
        reverse("api-attachments"), {"file": _file(name, data), **fields}, HTTP_X_FILE_NAME=name
    )


def _file(name: str, data: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


# --- uploading: what a file is, read from its bytes -----------------------------------------


def test_a_code_file_is_stored_as_text_with_its_name_and_size(alice: Any) -> None:
    response = upload(client_for(alice), "greet.py", CODE.encode())
    assert response.status_code == 201
    chip = response.json()["attachment"]
    assert chip["name"] == "greet.py" and chip["size"] == len(CODE.encode())
    assert chip["kind"] == "text" and chip["label"] == "PY"
    stored = Attachment.objects.get(uuid=chip["id"])
    assert stored.owner == alice and stored.message is None and stored.text == CODE


def test_the_text_of_a_pdf_is_extracted_with_its_page_count(alice: Any) -> None:
    response = upload(client_for(alice), "report.pdf", make_pdf(["Quarterly revenue", "Page two"]))
    assert response.status_code == 201, response.content
    chip = response.json()["attachment"]
    assert chip["kind"] == "pdf" and chip["pages"] == 2
    text = Attachment.objects.get(uuid=chip["id"]).text
    assert "Quarterly revenue" in text and "Page two" in text


def test_a_png_named_txt_is_an_image(alice: Any) -> None:
    response = upload(client_for(alice), "notes.txt", PNG)
    assert response.status_code == 201
    chip = response.json()["attachment"]
    assert chip["kind"] == "image" and chip["content_type"] == "image/png"


def test_a_pdf_that_is_not_a_pdf_is_refused(alice: Any) -> None:
    response = upload(client_for(alice), "report.pdf", b"just some text, not a PDF")
    assert response.status_code == 400
    assert response.json()["error"] == "not_pdf"
    assert "“report.pdf” is not a PDF." in response.json()["detail"]
    assert not Attachment.objects.exists()


def test_a_binary_file_is_refused(alice: Any) -> None:
    response = upload(client_for(alice), "program.txt", b"\x7fELF\x02\x01\x01\x00" + bytes(200))
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported"
    assert not Attachment.objects.exists()


def test_an_unreadable_pdf_is_refused(alice: Any) -> None:
    response = upload(client_for(alice), "broken.pdf", b"%PDF-1.4\n1 0 obj <<< garbage")
    assert response.status_code == 400
    assert response.json()["error"] in {"unreadable", "no_text"}
    assert not Attachment.objects.exists()


def test_an_encrypted_pdf_is_refused_with_a_clear_message(alice: Any) -> None:
    response = upload(client_for(alice), "secret.pdf", encrypted_pdf())
    assert response.status_code == 400
    assert response.json()["error"] == "encrypted"
    assert "password" in response.json()["detail"]


def test_a_file_over_the_size_limit_is_refused(alice: Any, settings: Any) -> None:
    settings.R1CHAT_ATTACHMENT_MAX_BYTES = 1000
    response = upload(client_for(alice), "big.txt", b"a" * 1001)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert "big.txt" in response.json()["detail"]
    assert not Attachment.objects.exists()
    assert upload(client_for(alice), "small.txt", b"a" * 1000).status_code == 201


def test_a_body_declaring_more_than_the_limit_is_refused_before_it_is_read(
    alice: Any, settings: Any
) -> None:
    settings.R1CHAT_ATTACHMENT_MAX_BYTES = 1000
    response = client_for(alice).post(
        reverse("api-attachments"),
        {"file": _file("huge.txt", b"a" * 200_000)},
        HTTP_X_FILE_NAME="huge.txt",
    )
    assert response.status_code == 413
    assert not Attachment.objects.exists()


def test_a_pdf_over_the_page_limit_is_refused(alice: Any, settings: Any) -> None:
    settings.R1CHAT_ATTACHMENT_MAX_PAGES = 2
    response = upload(client_for(alice), "long.pdf", make_pdf(["one", "two", "three"]))
    assert response.status_code == 400
    assert response.json()["error"] == "too_many_pages"
    assert "3 pages; the limit is 2" in response.json()["detail"]


def test_text_over_the_character_limit_is_refused(alice: Any, settings: Any) -> None:
    settings.R1CHAT_ATTACHMENT_MAX_CHARS = 50
    response = upload(client_for(alice), "essay.md", ("word " * 20).encode())
    assert response.status_code == 400
    assert response.json()["error"] == "too_long"


def test_uploading_needs_the_csrf_token(alice: Any) -> None:
    client = client_for(alice, enforce_csrf_checks=True)
    assert upload(client, "greet.py", CODE.encode()).status_code == 403
    assert not Attachment.objects.exists()
    client.get(reverse("home"))  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = client.post(
        reverse("api-attachments"),
        {"file": _file("greet.py", CODE.encode())},
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 201


def test_uploading_needs_a_signed_in_user() -> None:
    response = Client().post(reverse("api-attachments"), {"file": _file("a.txt", b"hello")})
    assert response.status_code in {302, 403}
    assert not Attachment.objects.exists()


def test_another_users_file_is_not_found_and_cannot_be_removed(alice: Any, bob: Any) -> None:
    chip = upload(client_for(alice), "greet.py", CODE.encode()).json()["attachment"]
    bob_client = client_for(bob)
    assert bob_client.get(reverse("api-attachment", args=[chip["id"]])).status_code == 404
    delete = reverse("api-attachment-delete", args=[chip["id"]])
    assert bob_client.post(delete).status_code == 404
    assert Attachment.objects.filter(uuid=chip["id"]).exists()
    detail = client_for(alice).get(reverse("api-attachment", args=[chip["id"]]))
    assert detail.json()["attachment"]["text"] == CODE
    assert client_for(alice).post(delete).status_code == 200
    assert not Attachment.objects.filter(uuid=chip["id"]).exists()


def test_an_image_is_refused_at_once_for_the_chosen_model_that_cannot_see(
    alice: Any, sim: Any
) -> None:
    backend = make_backend(sim.base_url)
    response = upload(
        client_for(alice), "photo.png", PNG, backend=backend.pk, model="deepseek-v4-flash"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "images_unsupported"
    assert "does not accept images" in response.json()["detail"]
    assert not Attachment.objects.exists()


# --- sending: the template, the history, the refusals ---------------------------------------


async def _upload(user: Any, name: str, data: bytes) -> dict[str, Any]:
    response = await sync_to_async(upload)(await sync_to_async(client_for)(user), name, data)
    assert response.status_code == 201, response.content
    return response.json()["attachment"]


async def _ask(tab: Tab, content: str, files: list[dict[str, Any]], **extra: Any) -> dict:
    frame = {
        "type": "send",
        "conversation": None,
        "content": content,
        "client_id": uuid.uuid4().hex,
        "attachments": [f["id"] for f in files],
        **extra,
    }
    await tab.send(frame)
    user_message = await tab.until("message.created")
    assistant = await tab.until("message.created")
    await tab.until("generation.done", message=assistant["message"]["id"])
    # The model's title for the new conversation is written after the answer: the test ends
    # once it is (a write still running would outlive the test's database).
    await tab.until("conversation.updated")
    return {"user": user_message["message"], "assistant": assistant["message"]}


def _sent_messages(sim: Any) -> list[dict[str, Any]]:
    """The messages of the last question the simulator was asked (not a title request)."""
    from conversations.turns.titles import TITLE_PROMPT

    chats = [
        r.body["messages"]
        for r in sim.requests
        if r.method == "POST"
        and r.path.endswith(("/chat/completions", "/api/chat"))
        and r.body["messages"][0]["content"] != TITLE_PROMPT
    ]
    return chats[-1]


async def test_the_model_receives_the_question_and_each_file_in_the_template(
    alice: Any, sim: Any
) -> None:
    await sync_to_async(make_backend)(sim.base_url)
    code = await _upload(alice, "greet.py", CODE.encode())
    pdf = await _upload(alice, "report.pdf", make_pdf(["Quarterly revenue rose"]))
    tab = await Tab.open(alice)
    turn = await _ask(tab, "What do these say?", [code, pdf])
    await tab.close()
    expected = (
        "What do these say?\n\n"
        f"File: greet.py\n```py\n{CODE}\n```\n\n"
        "File: report.pdf (PDF, 1 page)\n```\nQuarterly revenue rose\n```"
    )
    assert _sent_messages(sim)[-1] == {"role": "user", "content": expected}
    assert [f["name"] for f in turn["user"]["attachments"]] == ["greet.py", "report.pdf"]
    message = await Message.objects.aget(uuid=turn["user"]["id"])
    assert message.content == "What do these say?"  # the files are kept apart, with the message
    names = [a.name async for a in Attachment.objects.filter(message=message)]
    assert names == ["greet.py", "report.pdf"]


async def test_a_fence_inside_a_file_does_not_close_its_block(alice: Any, sim: Any) -> None:
    await sync_to_async(make_backend)(sim.base_url)
    readme = await _upload(alice, "README.md", b"Run:\n```sh\nmake\n```\n")
    tab = await Tab.open(alice)
    await _ask(tab, "Explain", [readme])
    await tab.close()
    assert _sent_messages(sim)[-1]["content"] == (
        "Explain\n\nFile: README.md\n````md\nRun:\n```sh\nmake\n```\n\n````"
    )


async def test_a_question_may_be_only_files(alice: Any, sim: Any) -> None:
    await sync_to_async(make_backend)(sim.base_url)
    code = await _upload(alice, "greet.py", CODE.encode())
    tab = await Tab.open(alice)
    await tab.send({"type": "send", "conversation": None, "content": "  ",
                    "client_id": "c1", "attachments": [code["id"]]})  # fmt: skip
    created = await tab.until("conversation.created")
    await tab.until("generation.done")
    await tab.until("conversation.updated")  # (the model's title, written after the answer)
    await tab.close()
    assert created["conversation"]["title"] == "greet.py"
    assert _sent_messages(sim)[-1]["content"] == f"File: greet.py\n```py\n{CODE}\n```"


async def test_later_turns_and_regenerations_still_send_the_files(alice: Any, sim: Any) -> None:
    await sync_to_async(make_backend)(sim.base_url)
    code = await _upload(alice, "greet.py", CODE.encode())
    tab = await Tab.open(alice)
    first = await _ask(tab, "Read this", [code])
    conversation = (await Message.objects.select_related("conversation").aget(
        uuid=first["user"]["id"])).conversation  # fmt: skip
    await tab.send({"type": "send", "conversation": str(conversation.uuid),
                    "content": "And now?", "client_id": "second"})  # fmt: skip
    await tab.until("message.created")
    second = await tab.until("message.created")
    await tab.until("generation.done", message=second["message"]["id"])
    history = _sent_messages(sim)
    assert history[0]["content"] == f"Read this\n\nFile: greet.py\n```py\n{CODE}\n```"
    assert history[-1] == {"role": "user", "content": "And now?"}
    await tab.send({"type": "regenerate", "message": first["assistant"]["id"]})
    regenerated = await tab.until("message.created")
    await tab.until("generation.done", message=regenerated["message"]["id"])
    assert _sent_messages(sim)[-1]["content"] == f"Read this\n\nFile: greet.py\n```py\n{CODE}\n```"
    await tab.close()


async def test_an_edited_question_keeps_its_files(alice: Any, sim: Any) -> None:
    await sync_to_async(make_backend)(sim.base_url)
    code = await _upload(alice, "greet.py", CODE.encode())
    tab = await Tab.open(alice)
    first = await _ask(tab, "Read this", [code])
    await tab.send({"type": "edit", "message": first["user"]["id"], "content": "Read it again"})
    edited = await tab.until("message.created")
    assistant = await tab.until("message.created")
    await tab.until("generation.done", message=assistant["message"]["id"])
    await tab.close()
    assert [f["name"] for f in edited["message"]["attachments"]] == ["greet.py"]
    expected = f"Read it again\n\nFile: greet.py\n```py\n{CODE}\n```"
    assert _sent_messages(sim)[-1]["content"] == expected
    assert await Attachment.objects.filter(message__uuid=edited["message"]["id"]).acount() == 1
    assert await Attachment.objects.filter(message__uuid=first["user"]["id"]).acount() == 1


async def test_another_users_file_id_is_refused_and_nothing_is_sent(
    alice: Any, bob: Any, sim: Any
) -> None:
    await sync_to_async(make_backend)(sim.base_url)
    alices = await _upload(alice, "greet.py", CODE.encode())
    tab = await Tab.open(bob)
    for ids in ([alices["id"]], [str(uuid.uuid4())], ["not-an-id"]):
        await tab.send({"type": "send", "conversation": None, "content": "Mine now?",
                        "client_id": uuid.uuid4().hex, "attachments": ids})  # fmt: skip
        error = await tab.until("error")
        assert error["code"] == "attachment_not_found"
    await tab.close()
    assert not await Message.objects.aexists()
    assert (await Attachment.objects.aget(uuid=alices["id"])).message_id is None
    assert not [r for r in sim.requests if r.method == "POST" and "chat" in r.path]


async def test_a_file_already_sent_cannot_be_sent_again(alice: Any, sim: Any) -> None:
    await sync_to_async(make_backend)(sim.base_url)
    code = await _upload(alice, "greet.py", CODE.encode())
    tab = await Tab.open(alice)
    await _ask(tab, "Once", [code])
    await tab.send({"type": "send", "conversation": None, "content": "Twice",
                    "client_id": "again", "attachments": [code["id"]]})  # fmt: skip
    assert (await tab.until("error"))["code"] == "attachment_not_found"
    await tab.close()
    assert await Message.objects.filter(role="user").acount() == 1


async def test_an_image_is_refused_for_a_model_that_cannot_see(alice: Any, sim: Any) -> None:
    await sync_to_async(make_backend)(sim.base_url, default_model="deepseek-v4-flash")
    image = await _upload(alice, "photo.png", PNG)
    tab = await Tab.open(alice)
    await tab.send({"type": "send", "conversation": None, "content": "What is this?",
                    "client_id": "img", "attachments": [image["id"]]})  # fmt: skip
    error = await tab.until("error")
    await tab.close()
    assert error["code"] == "images_unsupported" and error["ref"] == "img"
    assert "does not accept images" in error["detail"]
    assert not await Message.objects.aexists()
    assert (await Attachment.objects.aget(uuid=image["id"])).message_id is None


async def test_an_image_goes_to_an_ollama_model_that_sees(alice: Any, sim: Any) -> None:
    sim.scenario = Scenario(ollama_models={"llava:sim": ["completion", "vision"]})
    await sync_to_async(make_backend)(sim.base_url, kind="ollama", default_model="llava:sim")
    image = await _upload(alice, "photo.png", PNG)
    tab = await Tab.open(alice)
    await _ask(tab, "What is this?", [image])
    await tab.close()
    last = _sent_messages(sim)[-1]
    assert last["content"] == "What is this?\n\nImage: photo.png"
    assert last["images"] == [base64.b64encode(PNG).decode()]


async def test_an_image_goes_to_an_openai_model_the_admin_marked_as_seeing(
    alice: Any, sim: Any
) -> None:
    await sync_to_async(make_backend)(
        sim.base_url, default_model="deepseek-v4-flash", vision_models=["deepseek-v4-flash"]
    )
    image = await _upload(alice, "photo.png", PNG)
    tab = await Tab.open(alice)
    await _ask(tab, "What is this?", [image])
    await tab.close()
    parts = _sent_messages(sim)[-1]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?\n\nImage: photo.png"}
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert parts[1] == {"type": "image_url", "image_url": {"url": url}}


# --- shown: the page, the thread JSON, admin review -----------------------------------------


async def _conversation_with_files(user: Any, sim: Any) -> tuple[Any, dict[str, Any]]:
    await sync_to_async(make_backend)(sim.base_url)
    code = await _upload(user, "greet.py", CODE.encode())
    tab = await Tab.open(user)
    turn = await _ask(tab, "Read <b>this</b>", [code])
    await tab.close()
    message = await Message.objects.select_related("conversation").aget(uuid=turn["user"]["id"])
    return message.conversation, code


async def test_the_thread_json_and_the_page_show_the_chips_after_a_reload(
    alice: Any, sim: Any
) -> None:
    conversation, code = await _conversation_with_files(alice, sim)

    def fetch() -> tuple[Any, str]:
        client = client_for(alice)
        thread = client.get(reverse("api-conversation-thread", args=[conversation.uuid])).json()
        page = client.get(reverse("conversation-detail", args=[conversation.uuid]))
        return thread, page.content.decode()

    thread, page = await sync_to_async(fetch)()
    question = thread["messages"][0]
    assert question["attachments"][0]["id"] == code["id"]
    assert question["attachments"][0]["name"] == "greet.py"
    assert "text" not in question["attachments"][0]  # the text is fetched when opened
    assert f'<li class="file-chip" data-id="{code["id"]}" data-kind="text"' in page
    assert '<span class="file-chip-name">greet.py</span>' in page


async def test_admin_review_shows_the_files_and_their_text(alice: Any, sim: Any) -> None:
    conversation, _code = await _conversation_with_files(alice, sim)

    def review() -> tuple[str, Any]:
        root = client_for(make_user("root", is_staff=True, is_superuser=True))
        url = reverse("admin:conversations_conversation_review", args=[conversation.uuid])
        response = root.get(url)
        assert response.status_code == 200
        export = reverse("admin:conversations_conversation_export_json", args=[conversation.uuid])
        return response.content.decode(), root.get(export).json()

    html, exported = await sync_to_async(review)()
    assert '<span class="r1-file-name">greet.py</span>' in html
    assert "return f&quot;Hello, {name}!&quot;" in html  # the extracted text, escaped
    question = next(m for m in exported["messages"] if m["role"] == "user")
    assert question["attachments"][0]["name"] == "greet.py"
    assert question["attachments"][0]["text"] == CODE


def test_the_template_is_the_documented_one() -> None:
    pdf = Attachment(name="a.pdf", kind="pdf", text="Page text", pages=3)
    code = Attachment(name="x.rs", kind="text", text="fn main() {}")
    assert attachments.with_files("Question", [code, pdf]) == (
        "Question\n\nFile: x.rs\n```rs\nfn main() {}\n```\n\n"
        "File: a.pdf (PDF, 3 pages)\n```\nPage text\n```"
    )


def test_an_image_in_the_history_is_named_for_a_model_that_cannot_see_it(alice: Any) -> None:
    from conversations.turns.threads import history_for

    question = Message(pk=1, role="user", content="And this?")
    image = Attachment(name="photo.png", kind="image", content_type="image/png", data=PNG)
    history = history_for([question], files={1: [image]}, images=False)
    assert history == [
        {
            "role": "user",
            "content": "And this?\n\nImage: photo.png (not shown: this model does not accept "
            "images)",
        }
    ]
    shown = history_for([question], files={1: [image]}, images=True)
    assert shown[0]["images"] == [
        {"content_type": "image/png", "data": base64.b64encode(PNG).decode()}
    ]


def test_files_never_sent_are_deleted_after_a_day(alice: Any) -> None:
    import datetime as dt

    from django.utils import timezone

    client = client_for(alice)
    old = upload(client, "old.txt", b"old").json()["attachment"]
    Attachment.objects.filter(uuid=old["id"]).update(
        created_at=timezone.now() - dt.timedelta(days=2)
    )
    upload(client, "new.txt", b"new")
    assert list(Attachment.objects.values_list("name", flat=True)) == ["new.txt"]


def test_a_code_file_that_mentions_the_pdf_header_is_text(alice: Any) -> None:
    source = b'# Writes PDFs\nHEADER = b"%PDF-1.7"\n'
    response = upload(client_for(alice), "make_pdf.py", source)
    assert response.status_code == 201
    assert response.json()["attachment"]["kind"] == "text"


def test_an_image_is_served_back_only_to_its_owner_and_only_images_are(
    alice: Any, bob: Any
) -> None:
    client = client_for(alice)
    image = upload(client, "photo.png", PNG).json()["attachment"]
    text = upload(client, "greet.py", CODE.encode()).json()["attachment"]
    response = client.get(image["thumbnail"])
    assert response.status_code == 200 and response.content == PNG
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert client_for(bob).get(image["thumbnail"]).status_code == 404
    assert text["thumbnail"] == ""
    url = reverse("api-attachment-content", args=[text["id"]])
    assert client.get(url).status_code == 404
