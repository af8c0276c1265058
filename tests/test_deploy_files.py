"""deploy/: the compose file is valid Compose, nginx accepts (and really proxies with) its config,
and the production settings pass `manage.py check --deploy`."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import processes

BASE_DIR = Path(__file__).resolve().parent.parent
DEPLOY = BASE_DIR / "deploy"
BIN = Path(sys.executable).parent
REQUIRED = os.environ.get("R1CHAT_BROWSER_TESTS") == "required"

# Values for the variables deploy/.env provides.
SAMPLE_ENV = {
    "R1CHAT_HOST": "chat.example.com",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "POSTGRES_PASSWORD": "pw",
    "EMAIL_HOST": "smtp.example.com",
}


def _yaml() -> Any:
    ruamel = pytest.importorskip("ruamel.yaml")  # installed with check-jsonschema (dev extras)
    return ruamel.YAML(typ="safe")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _yaml().load((DEPLOY / "compose.yaml").read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


# --- compose.yaml ------------------------------------------------------------------------------


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    tool = BIN / "check-jsonschema"
    if not tool.exists():
        pytest.fail("check-jsonschema is missing: it comes with the dev extras (make test)")
    return subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_validates_against_the_compose_specification() -> None:
    result = _check_jsonschema(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_mistakes(tmp_path: Path) -> None:
    broken = (DEPLOY / "compose.yaml").read_text().replace("stop_grace_period:", "stop_grace:")
    (tmp_path / "compose.yaml").write_text(broken)
    assert _check_jsonschema(tmp_path / "compose.yaml").returncode != 0


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"app", "migrate", "postgres", "redis", "ollama", "nginx"} <= set(services)

    app = services["app"]
    assert app["deploy"]["replicas"] >= 2  # several Daphne workers
    command = app["command"]
    assert command[0] == "daphne" and command[-1] == "r1chat.asgi:application"
    assert "--proxy-headers" in command
    assert "--websocket-max-message-size" in command
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert app["depends_on"]["redis"]["condition"] == "service_healthy"
    # Room for the shutdown grace period (20 s) before Docker's SIGKILL.
    assert int(app["stop_grace_period"].rstrip("s")) >= 30

    assert "migrate" in " ".join(services["migrate"]["command"])
    assert services["migrate"]["restart"] == "no"

    gpu = services["ollama"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]

    for name in ("app", "postgres", "redis", "ollama", "nginx"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert services[name].get("restart") == "unless-stopped", name
    for volume in ("pgdata", "ollama", "static"):
        assert volume in compose["volumes"]
    assert "static:/srv/static:ro" in services["nginx"]["volumes"]
    assert "static:/srv/static" in services["migrate"]["volumes"]
    # Only nginx is published; the workers, the database and Redis are not.
    for name in ("app", "postgres", "redis", "ollama", "migrate"):
        assert "ports" not in services[name], name


def test_compose_environment_is_production_grade(compose: dict[str, Any]) -> None:
    env = {k: interpolate(str(v), SAMPLE_ENV) for k, v in compose["x-app-environment"].items()}
    assert env["DEBUG"] == "0"
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["REDIS_URL"].startswith("redis://")
    assert env["R1CHAT_TRUSTED_PROXY_COUNT"] == "1"
    assert env["R1CHAT_HTTPS"] == "1"
    assert "chat.example.com" in env["ALLOWED_HOSTS"].split(",")
    with pytest.raises(KeyError):  # a forgotten secret stops compose instead of running open
        interpolate(compose["x-app-environment"]["SECRET_KEY"], {})


# --- manage.py check --deploy ------------------------------------------------------------------


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "R1CHAT_DATA_DIR": str(tmp_path / "data"),
        "DEBUG": "0",
        "SECRET_KEY": SAMPLE_ENV["SECRET_KEY"],
        "ALLOWED_HOSTS": "chat.example.com",
        "EMAIL_HOST": "smtp.example.com",
    }
    for name in ("DATABASE_URL", "REDIS_URL"):  # the configuration this run tests
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update(extra)
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    result = _manage(_production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_is_clean_with_the_compose_environment(
    tmp_path: Path, compose: dict[str, Any]
) -> None:
    env = {k: interpolate(str(v), SAMPLE_ENV) for k, v in compose["x-app-environment"].items()}
    env = {k: v for k, v in env.items() if v != ""}
    full = _production_env(tmp_path, **env)
    result = _manage(full, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_settings_values(tmp_path: Path) -> None:
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'csp': [str(x) for x in s.SECURE_CSP['connect-src']], "
        "'hsts': s.SECURE_HSTS_SECONDS, 'secure_cookie': s.SESSION_COOKIE_SECURE, "
        "'csrf_secure': s.CSRF_COOKIE_SECURE, 'proxy': s.SECURE_PROXY_SSL_HEADER, "
        "'redirect': s.SECURE_SSL_REDIRECT, 'exempt': s.SECURE_REDIRECT_EXEMPT, "
        "'grace': s.R1CHAT_SHUTDOWN_GRACE}))"
    )
    env = _production_env(
        tmp_path, DJANGO_SETTINGS_MODULE="r1chat.settings", R1CHAT_TRUSTED_PROXY_COUNT="1"
    )
    env["PYTHONPATH"] = str(BASE_DIR)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    import json

    values = json.loads(result.stdout.strip().splitlines()[-1])
    # The CSP allows the site itself and its WebSocket, nothing else.
    assert values["csp"] == ["'self'", "wss://chat.example.com"]
    assert values["hsts"] >= 31536000
    assert values["secure_cookie"] and values["csrf_secure"] and values["redirect"]
    assert values["proxy"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    # Probes reach the workers over plain HTTP.
    assert any(re.fullmatch(p, "healthz") for p in values["exempt"])
    assert any(re.fullmatch(p, "readyz") for p in values["exempt"])
    assert values["grace"] == 20.0


# --- nginx.conf --------------------------------------------------------------------------------


def _nginx() -> str:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        if REQUIRED:
            pytest.fail("nginx is not installed (R1CHAT_BROWSER_TESTS=required)")
        pytest.skip("nginx is not installed")
    return nginx


def _openssl_cert(directory: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(directory / "privkey.pem"),
         "-out", str(directory / "fullchain.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def local_nginx_conf(
    tmp: Path, *, upstream: str = "127.0.0.1:8000", http_port: int = 80, https_port: int = 443
) -> Path:
    """deploy/nginx.conf with compose's names and paths replaced by local, temporary ones."""
    for name in ("certs", "static", "acme", "logs", "temp"):
        (tmp / name).mkdir(exist_ok=True)
    _openssl_cert(tmp / "certs")
    text = (DEPLOY / "nginx.conf").read_text()
    replacements = {
        "server app:8000": f"server {upstream}",
        "/var/run/nginx.pid": str(tmp / "nginx.pid"),
        "/var/log/nginx/": str(tmp / "logs") + "/",
        "/etc/nginx/certs/": str(tmp / "certs") + "/",
        "root /srv;": f"root {tmp};",
        "root /var/www/acme;": f"root {tmp / 'acme'};",
        "listen 80 ": f"listen {http_port} ",
        "listen [::]:80 ": f"listen [::]:{http_port} ",
        "listen 443 ": f"listen {https_port} ",
        "listen [::]:443 ": f"listen [::]:{https_port} ",
        "return 301 https://$host$request_uri;": (
            f"return 301 https://$host:{https_port}$request_uri;"
        ),
    }
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx.conf no longer contains {old!r}"
        text = text.replace(old, new)
    temp = tmp / "temp"
    text = text.replace(
        "http {\n",
        "http {\n"
        f"    client_body_temp_path {temp}/body;\n    proxy_temp_path {temp}/proxy;\n"
        f"    fastcgi_temp_path {temp}/fastcgi;\n    uwsgi_temp_path {temp}/uwsgi;\n"
        f"    scgi_temp_path {temp}/scgi;\n",
        1,
    )
    if not Path("/etc/nginx/mime.types").exists():
        (tmp / "mime.types").write_text("types { text/css css; text/javascript js; }\n")
        text = text.replace("/etc/nginx/mime.types", str(tmp / "mime.types"))
    if os.geteuid() == 0:  # workers would run as nobody, who cannot read pytest's tmp dirs
        text = "user root;\n" + text
    path = tmp / "nginx.conf"
    path.write_text(text)
    return path


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    nginx = _nginx()
    conf = local_nginx_conf(tmp_path)
    result = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-e", str(tmp_path / "logs" / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_the_nginx_config_has_what_a_chat_needs() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    ws = text[text.index("location /ws/") :]
    ws = ws[: ws.index("}")]
    assert "proxy_pass http://r1chat_app;" in ws
    read_timeout = re.search(r"proxy_read_timeout (\d+)([smh]);", ws)
    assert read_timeout is not None
    seconds = int(read_timeout.group(1)) * {"s": 1, "m": 60, "h": 3600}[read_timeout.group(2)]
    assert seconds >= 3600  # minutes of reasoning, hours of an idle tab
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_set_header Connection $connection_upgrade;" in text
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text  # set, never appended
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
    assert re.search(r"client_max_body_size \d+[km];", text)
    assert re.search(r"upstream r1chat_app \{[^}]*server app:8000", text)


@pytest.fixture
def nginx_in_front(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """nginx with deploy/nginx.conf in front of a stand-in upstream that echoes what it got."""
    nginx = _nginx()
    upstream_port = processes.free_port()
    echo = subprocess.Popen(
        [sys.executable, "-c", _ECHO_SERVER, str(upstream_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    http_port, https_port = processes.free_port(), processes.free_port()
    conf = local_nginx_conf(
        tmp_path,
        upstream=f"127.0.0.1:{upstream_port}",
        http_port=http_port,
        https_port=https_port,
    )
    (tmp_path / "static" / "css").mkdir(parents=True)
    (tmp_path / "static" / "css" / "chat.0123456789ab.css").write_text("body{}" * 400)
    (tmp_path / "static" / "css" / "chat.css").write_text("body{}")
    # Run in the foreground of its own process (no daemon), so the fixture can stop it.
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-e", str(tmp_path / "logs" / "error.log"),
         "-g", "daemon off; master_process on;"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        processes.wait_http(f"http://127.0.0.1:{http_port}/nginx-health", proc=proc)
        processes.wait_http(f"http://127.0.0.1:{upstream_port}/", proc=echo)
        yield http_port, https_port, tmp_path
    finally:
        for p in (proc, echo):
            processes.stop(p, sig=signal.SIGTERM, timeout=10)


# A stand-in for a Daphne worker: answers HTTP with the request it saw (as JSON) and completes
# WebSocket upgrades (then sends one text frame with the request headers).
_ECHO_SERVER = r"""
import base64, hashlib, json, socketserver, sys
class H(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline().decode()
            if not line:
                return
            method, path, _ = line.split(" ", 2)
            headers = {}
            while (h := self.rfile.readline().decode().strip()):
                k, v = h.split(":", 1)
                headers[k.strip().lower()] = v.strip()
            seen = json.dumps({"method": method, "path": path, "headers": headers}).encode()
            if headers.get("upgrade", "").lower() == "websocket":
                accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"]
                    + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
                self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n").encode())
                n = len(seen)
                head = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big")
                self.wfile.write(head + seen)
                self.wfile.flush()
                self.rfile.read(2)
                return
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + b"Content-Length: " + str(len(seen)).encode() + b"\r\n\r\n" + seen)
            self.wfile.flush()
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _https(port: int, path: str, headers: dict[str, str] | None = None) -> Any:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(f"https://127.0.0.1:{port}{path}", headers=headers or {})
    return urllib.request.urlopen(request, context=context, timeout=10)


def test_nginx_proxies_http_with_trusted_forwarded_headers(nginx_in_front) -> None:
    import json

    _http, https, _tmp = nginx_in_front
    with _https(https, "/c/abc?x=1", {"X-Forwarded-For": "6.6.6.6", "Host": "chat.local"}) as r:
        seen = json.loads(r.read())
    assert seen["path"] == "/c/abc?x=1"
    headers = seen["headers"]
    # A client-sent X-Forwarded-For is replaced by the real peer address.
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["host"] == "chat.local"


def test_nginx_redirects_http_to_https(nginx_in_front) -> None:
    http, https, _tmp = nginx_in_front

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(f"http://127.0.0.1:{http}/c/abc", timeout=10)
    assert info.value.code == 301
    assert info.value.headers["Location"] == f"https://127.0.0.1:{https}/c/abc"


def test_nginx_serves_static_files_with_long_caching_for_hashed_names(nginx_in_front) -> None:
    _http, https, _tmp = nginx_in_front
    with _https(https, "/static/css/chat.0123456789ab.css") as r:
        assert r.read().startswith(b"body{}")
        assert "immutable" in r.headers["Cache-Control"]
        assert r.headers["Content-Type"].startswith("text/css")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    with _https(https, "/static/css/chat.css") as r:
        assert "immutable" not in (r.headers.get("Cache-Control") or "")
    with pytest.raises(urllib.error.HTTPError) as info:
        _https(https, "/static/css/missing.css")  # answered by nginx, never by the app
    assert info.value.code == 404


def test_nginx_upgrades_websockets(nginx_in_front) -> None:
    import asyncio
    import json

    websockets = pytest.importorskip("websockets")
    _http, https, _tmp = nginx_in_front

    async def handshake() -> dict[str, Any]:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        async with websockets.connect(
            f"wss://127.0.0.1:{https}/ws/chat/",
            ssl=context,
            additional_headers={"Origin": "https://chat.local"},
            open_timeout=10,
        ) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    seen = asyncio.run(handshake())
    assert seen["path"] == "/ws/chat/"
    assert seen["headers"]["upgrade"].lower() == "websocket"
    assert seen["headers"]["connection"].lower() == "upgrade"
    assert seen["headers"]["origin"] == "https://chat.local"
    assert seen["headers"]["x-forwarded-proto"] == "https"
