"""r1chat settings: one file, configured from the environment (12-factor).

Embedded defaults (no environment at all) give a working single-process install: SQLite in WAL
mode under ./data, the in-memory channel layer, the local-memory cache, and email and SMS codes
printed to the console. Production sets DEBUG off, a SECRET_KEY, ALLOWED_HOSTS, and usually
DATABASE_URL and REDIS_URL.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("R1CHAT_DATA_DIR", BASE_DIR / "data"))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _development_secret_key() -> str:
    """A key generated once per checkout and kept in the git-ignored data folder."""
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY") or _development_secret_key()
DEBUG = env_bool("DEBUG", False)
# HTTPS-only cookies, HSTS and the redirect follow DEBUG unless set explicitly (a TLS proxy in
# front of a DEBUG-off install is the production shape).
HTTPS = env_bool("R1CHAT_HTTPS", not DEBUG)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Number of reverse proxies in front of the app whose X-Forwarded-* headers are trusted.
TRUSTED_PROXY_COUNT = env_int("R1CHAT_TRUSTED_PROXY_COUNT", 0)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "allauth",
    "allauth.account",
    "accounts",
    "conversations",
    "review",
    "sharing",
    "transfer",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "r1chat.urls"
ASGI_APPLICATION = "r1chat.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("R1CHAT_DB_POOL_MIN", 2),
            "max_size": env_int("R1CHAT_DB_POOL_MAX", 20),
            "timeout": 10,
        }
        # An explicit test name: the live-server process must find the same database. The test
        # environment names one per run, so concurrent runs never share it.
        DATABASES["default"]["TEST"] = {
            "NAME": os.environ.get("R1CHAT_TEST_DB_NAME") or "test_" + DATABASES["default"]["NAME"]
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": {
                # WAL lets readers run beside the writer; IMMEDIATE transactions plus a busy
                # timeout make a burst of writes queue instead of failing "database is locked".
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": (
                    "PRAGMA journal_mode=WAL;"
                    "PRAGMA synchronous=NORMAL;"
                    "PRAGMA busy_timeout=30000;"
                    "PRAGMA foreign_keys=ON;"
                ),
            },
            # A file, not memory: the browser tests' server process opens the same database.
            # The test environment names one per run, so concurrent runs never share it.
            "TEST": {"NAME": os.environ.get("R1CHAT_TEST_DB") or DATA_DIR / "test_db.sqlite3"},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Redis: channel layer and cache ---------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
# Keys of this install in a shared Redis (channel layer and cache), so two installs (or two test
# runs) on one Redis database never see each other's messages.
REDIS_PREFIX = os.environ.get("R1CHAT_REDIS_PREFIX", "r1chat")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # The local layer of each process, joined to the others through channels-redis's
            # RedisChannelLayer (r1chat/layers.py): frames stay in their process.
            "BACKEND": "r1chat.layers.TeamChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": f"{REDIS_PREFIX}-asgi",
                "capacity": 1000,
                "expiry": 60,
                "group_expiry": 86400,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{REDIS_PREFIX}-cache",
            # Django's RedisCache makes a pool per cache object, and it keeps one object per
            # task: one pool per process instead (r1chat/cachepool.py).
            "OPTIONS": {"pool_class": "r1chat.cachepool.SharedConnectionPool"},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "r1chat.layers.LocalChannelLayer", "CONFIG": {"capacity": 1000}}
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Authentication -------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_FORMS = {
    "confirm_login_code": "accounts.forms.ConfirmLoginCodeForm",
    "confirm_password_reset_code": "accounts.forms.ConfirmPasswordResetCodeForm",
    "login": "accounts.forms.LoginForm",
    "signup": "accounts.forms.SignupForm",
    "verify_phone": "accounts.forms.VerifyPhoneForm",
    "request_login_code": "accounts.forms.RequestLoginCodeForm",
    "reset_password": "accounts.forms.ResetPasswordForm",
}
# Sign up with an email address OR a phone number (the user picks); sign in with either.
ACCOUNT_LOGIN_METHODS = {"email", "phone"}
ACCOUNT_SIGNUP_FIELDS = ["email", "phone", "password1*", "password2*"]
# Both are confirmed by a 6-digit code before the account can chat: the project's own login
# stage (accounts.stages.VerifyContactStage) replaces allauth's email-link and phone stages.
ACCOUNT_EMAIL_VERIFICATION = "optional"
ACCOUNT_PHONE_VERIFICATION_ENABLED = True
ACCOUNT_USER_MODEL_USERNAME_FIELD = "username"
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_SESSION_REMEMBER = True
# Addresses are changed on /account/ (confirmed by a code); one email address per account.
ACCOUNT_MAX_EMAIL_ADDRESSES = 1
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS = 3
ACCOUNT_LOGIN_BY_CODE_TIMEOUT = 600
ACCOUNT_LOGIN_BY_CODE_SUPPORTS_RESEND = 3
ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED = True
ACCOUNT_PASSWORD_RESET_BY_CODE_MAX_ATTEMPTS = 3
ACCOUNT_PASSWORD_RESET_BY_CODE_TIMEOUT = 600
ALLAUTH_USER_CODE_FORMAT = {"numeric": True, "length": 6, "dashed": False}
ACCOUNT_LOGIN_BY_CODE_FORMAT = ALLAUTH_USER_CODE_FORMAT
ACCOUNT_PHONE_VERIFICATION_CODE_FORMAT = ALLAUTH_USER_CODE_FORMAT
ACCOUNT_PASSWORD_RESET_BY_CODE_CODE_FORMAT = ALLAUTH_USER_CODE_FORMAT  # (sic: allauth's name)
# allauth's rate limits live in the cache: Redis when REDIS_URL is set (shared by processes).
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/300s/key",
    "request_login_code": "20/m/ip,3/m/key",
    "reset_password": "20/m/ip,5/m/key",
    "signup": "20/m/ip",
}
# So per-IP limits see the real client behind nginx.
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_COUNT
# W001: no login method is a *required* sign-up field (email OR phone is enforced by the form).
SILENCED_SYSTEM_CHECKS = ["account.W001"]

# The name mails and text messages are signed with ("Hello from r1chat!").
R1CHAT_SITE_NAME = os.environ.get("R1CHAT_SITE_NAME", "").strip() or "r1chat"
# Sign-up: open | approval (an admin approves) | invite (links made in the admin) | closed.
R1CHAT_SIGNUP_MODE = os.environ.get("R1CHAT_SIGNUP_MODE", "open").strip().lower()
# When set (comma-separated), sign-up needs an email address at one of these domains.
R1CHAT_ALLOWED_EMAIL_DOMAINS = [
    d.lower().lstrip("@") for d in env_list("R1CHAT_ALLOWED_EMAIL_DOMAINS")
]
# Codes: lifetime, and the wait before another code may be sent to the same address.
R1CHAT_CODE_TIMEOUT = env_int("R1CHAT_CODE_TIMEOUT", 600)
R1CHAT_CODE_RESEND_SECONDS = env_int("R1CHAT_CODE_RESEND_SECONDS", 60)
# Mail and SMS are sent by a few background threads, off the request path (accounts.outbox).
R1CHAT_SEND_IN_BACKGROUND = env_bool("R1CHAT_SEND_IN_BACKGROUND", True)
R1CHAT_SEND_WORKERS = env_int("R1CHAT_SEND_WORKERS", 4)
# Tries at codes (any flow), counted in the cache: (tries, seconds) per client address and per
# address a code went to. Each code also dies after 3 tries, counted in the database.
R1CHAT_CODE_TRIES_PER_IP = (env_int("R1CHAT_CODE_TRIES_PER_IP", 30), 300)
R1CHAT_CODE_TRIES_PER_RECIPIENT = (env_int("R1CHAT_CODE_TRIES_PER_RECIPIENT", 10), 300)

# --- SMS ------------------------------------------------------------------------------------
# Phone numbers without a country code are read in this region (ISO 3166, e.g. CN, US).
PHONE_DEFAULT_REGION = os.environ.get("PHONE_DEFAULT_REGION", "CN").strip().upper()
# Countries SMS may go to: region codes (CN, HK) or calling codes (+86); "*" allows all.
SMS_ALLOWED_COUNTRIES = env_list("SMS_ALLOWED_COUNTRIES", [PHONE_DEFAULT_REGION])
SMS_DAILY_BUDGET = env_int("SMS_DAILY_BUDGET", 1000)  # all numbers together, per day
SMS_DAILY_PER_NUMBER = env_int("SMS_DAILY_PER_NUMBER", 10)
# console (development) | locmem (tests) | twilio | aliyun | a dotted path to a backend class.
_sms_kind = os.environ.get("SMS_BACKEND", "console").strip()
if _sms_kind == "twilio":
    SMS_BACKEND = {
        "BACKEND": "accounts.sms.TwilioSmsBackend",
        "OPTIONS": {
            "account_sid": os.environ.get("TWILIO_ACCOUNT_SID", ""),
            "auth_token": os.environ.get("TWILIO_AUTH_TOKEN", ""),
            "from_number": os.environ.get("TWILIO_FROM_NUMBER") or None,
            "messaging_service_sid": os.environ.get("TWILIO_MESSAGING_SERVICE_SID") or None,
        },
    }
elif _sms_kind == "aliyun":
    SMS_BACKEND = {
        "BACKEND": "accounts.sms.AliyunSmsBackend",
        "OPTIONS": {
            "access_key_id": os.environ.get("ALIYUN_ACCESS_KEY_ID", ""),
            "access_key_secret": os.environ.get("ALIYUN_ACCESS_KEY_SECRET", ""),
            "sign_name": os.environ.get("ALIYUN_SMS_SIGN_NAME", ""),
            "template_code": os.environ.get("ALIYUN_SMS_TEMPLATE_CODE", ""),
            "region_id": os.environ.get("ALIYUN_REGION_ID", "cn-hangzhou"),
        },
    }
elif _sms_kind in {"console", "locmem"}:
    SMS_BACKEND = {"BACKEND": f"accounts.sms.{_sms_kind.capitalize()}SmsBackend"}
else:
    SMS_BACKEND = {"BACKEND": _sms_kind}

# --- Mail -----------------------------------------------------------------------------------
if os.environ.get("EMAIL_HOST"):
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": os.environ["EMAIL_HOST"],
                "port": env_int("EMAIL_PORT", 587),
                "username": os.environ.get("EMAIL_HOST_USER", ""),
                "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
                "use_tls": env_bool("EMAIL_USE_TLS", True),
            },
        }
    }
else:
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "r1chat <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Hashed, compressed files from `collectstatic` in production; the source folders otherwise.
STATIC_MANIFEST = env_bool("R1CHAT_STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "servestatic.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
SERVESTATIC_USE_FINDERS = not STATIC_MANIFEST
SERVESTATIC_AUTOREFRESH = DEBUG

# --- Security -------------------------------------------------------------------------------
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 60 * 60 * 24 * 30
if HTTPS:
    SECURE_SSL_REDIRECT = env_bool("R1CHAT_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("R1CHAT_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading is opt-in: once browsers ship the domain in their preload list, every
    # subdomain is HTTPS-only for months, and removal is slow. Off, Django's deploy check
    # (security.W021, "SECURE_HSTS_PRELOAD is not True") says so; that is the choice made here.
    SECURE_HSTS_PRELOAD = env_bool("R1CHAT_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS.append("security.W021")
if TRUSTED_PROXY_COUNT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# --- Model backends -------------------------------------------------------------------------
# Read on first start to create the Backend rows; managed in the admin afterwards.
# Unset: an Ollama is used only if one answers at OLLAMA_PROBE_URL (turns/catalog.py).
OLLAMA_BASE_URL = os.environ.get("OLLAMA_BASE_URL", "")
OLLAMA_PROBE_URL = "http://127.0.0.1:11434"
DEEPSEEK_API_KEY = os.environ.get("DEEPSEEK_API_KEY", "")
DEEPSEEK_BASE_URL = os.environ.get("DEEPSEEK_BASE_URL", "https://api.deepseek.com")
R1CHAT_OPENAI_BASE_URL = os.environ.get("R1CHAT_OPENAI_BASE_URL", "")
R1CHAT_OPENAI_API_KEY = os.environ.get("R1CHAT_OPENAI_API_KEY", "")
# Tokens asked for beyond the answer's maximum length where a model's limit counts its
# reasoning too (turns/budget.py).
R1CHAT_REASONING_ALLOWANCE = int(os.environ.get("R1CHAT_REASONING_ALLOWANCE", "8192"))
# Start the bundled model simulator when no real backend answers (the offline demo).
R1CHAT_SIMULATOR = os.environ.get("R1CHAT_SIMULATOR", "auto")  # auto | on | off

# --- Review ---------------------------------------------------------------------------------
# Who may open users' conversations in the admin review (every opening is audited and shown to
# the owner): superusers | permission (staff with review.review_conversations) | nobody.
R1CHAT_REVIEW_ACCESS = os.environ.get("R1CHAT_REVIEW_ACCESS", "superusers").strip().lower()
if R1CHAT_REVIEW_ACCESS not in {"superusers", "permission", "nobody"}:
    raise ValueError("R1CHAT_REVIEW_ACCESS must be superusers, permission or nobody")
# Tokens (prompt + completion) a user may use per day unless the admin sets their own; 0: none.
R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA = env_int("R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA", 0)

# --- API (OpenAI-compatible, /v1/) -----------------------------------------------------------
# Seconds a response-cache entry lives (0 turns the cache off); the limits of one request.
R1CHAT_API_CACHE_SECONDS = env_int("R1CHAT_API_CACHE_SECONDS", 24 * 60 * 60)
R1CHAT_API_MAX_MESSAGES = env_int("R1CHAT_API_MAX_MESSAGES", 500)
R1CHAT_API_MAX_CHARS = env_int("R1CHAT_API_MAX_CHARS", 1_000_000)
R1CHAT_API_MAX_BODY = env_int("R1CHAT_API_MAX_BODY", 2 * 1024 * 1024)

# === Deployment ================================================================================
# Owned by the team-deployment work (deploy/, r1chat/readiness.py, conversations/shutdown.py);
# see deploy/README.md. Everything above is the lead's.

# On SIGTERM, running generations get this many seconds to finish; the rest are saved as
# `interrupted` with their partial text (conversations.runner.shutdown).
R1CHAT_SHUTDOWN_GRACE = env_float("R1CHAT_SHUTDOWN_GRACE", 20.0)


# The chat WebSocket in the CSP. Browsers implementing CSP 3 let 'self' cover ws:/wss: to the same
# host; older ones (Safari < 15.4) need the socket's origin spelled out. Only this site's hosts.
def _websocket_sources(hosts: list[str], https: bool) -> list[str]:
    scheme = "wss" if https else "ws"
    sources = []
    for host in hosts:
        if host == "*" or host.startswith("["):  # no match-everything, no IPv6 literals in CSP
            continue
        host = "*" + host if host.startswith(".") else host
        # Behind TLS the socket uses the default port; in plain-HTTP development any port.
        sources.append(f"{scheme}://{host}" + ("" if https else ":*"))
    return sources


SECURE_CSP = {
    **SECURE_CSP,
    "connect-src": [CSP.SELF, *_websocket_sources(ALLOWED_HOSTS, HTTPS)],
}

# Running generations beat every R1CHAT_HEARTBEAT_INTERVAL seconds; one whose beat is older than
# R1CHAT_STALE_AFTER belongs to a dead process and is shown as `interrupted` (tests shorten both).
R1CHAT_HEARTBEAT_INTERVAL = env_float("R1CHAT_HEARTBEAT_INTERVAL", 5.0)
R1CHAT_STALE_AFTER = env_float("R1CHAT_STALE_AFTER", 20.0)
# Every R1CHAT_LIVENESS_INTERVAL seconds a process marks its running generations alive in the
# cache (for three intervals); one left unmarked is shown as `interrupted` within seconds.
R1CHAT_LIVENESS_INTERVAL = env_float("R1CHAT_LIVENESS_INTERVAL", 1.0)
# How long a deleted conversation can be brought back with Undo before it is purged.
R1CHAT_DELETE_UNDO_SECONDS = env_float("R1CHAT_DELETE_UNDO_SECONDS", 10.0)

# The chat socket: frames a tab may send (a burst, then a rate a second), and a user's tabs
# together a minute (conversations.chat.consumers); questions a minute (turns.actions).
R1CHAT_SOCKET_FRAME_BURST = env_int("R1CHAT_SOCKET_FRAME_BURST", 20)
R1CHAT_SOCKET_FRAME_RATE = env_float("R1CHAT_SOCKET_FRAME_RATE", 5.0)
R1CHAT_USER_FRAMES_PER_MINUTE = env_int("R1CHAT_USER_FRAMES_PER_MINUTE", 300)
R1CHAT_SEND_RATE_PER_MINUTE = env_int("R1CHAT_SEND_RATE_PER_MINUTE", 30)
# Rendering a streaming text's open last block takes at most this share of a core per stream
# (conversations.runner.generation).
R1CHAT_RENDER_SHARE = env_float("R1CHAT_RENDER_SHARE", 0.001)
# Imports (transfer): the upload, its JSON unpacked, conversations per file, messages per
# conversation, characters per message; imports run in a thread of the server process.
R1CHAT_IMPORT_MAX_BYTES = env_int("R1CHAT_IMPORT_MAX_BYTES", 100 * 1024 * 1024)
R1CHAT_IMPORT_MAX_JSON_BYTES = env_int("R1CHAT_IMPORT_MAX_JSON_BYTES", 200 * 1024 * 1024)
R1CHAT_IMPORT_MAX_CONVERSATIONS = env_int("R1CHAT_IMPORT_MAX_CONVERSATIONS", 20_000)
R1CHAT_IMPORT_MAX_MESSAGES = env_int("R1CHAT_IMPORT_MAX_MESSAGES", 10_000)
R1CHAT_IMPORT_MAX_MESSAGE_CHARS = env_int("R1CHAT_IMPORT_MAX_MESSAGE_CHARS", 1_000_000)
R1CHAT_IMPORT_IN_BACKGROUND = env_bool("R1CHAT_IMPORT_IN_BACKGROUND", True)

# Attachments (conversations.attachments): the largest file, the most PDF pages, and the most
# characters of text one file may give the model.
R1CHAT_ATTACHMENT_MAX_BYTES = env_int("R1CHAT_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
R1CHAT_ATTACHMENT_MAX_PAGES = env_int("R1CHAT_ATTACHMENT_MAX_PAGES", 100)
R1CHAT_ATTACHMENT_MAX_CHARS = env_int("R1CHAT_ATTACHMENT_MAX_CHARS", 200_000)

# redis-py 8 times socket reads out after 5 s by default: exactly channels-redis's blocking-pop
# wait (BZPOPMIN, 5 s), so a socket idle for 5 s raised TimeoutError in its consumer and was
# closed with 1011. Reads get more room than the blocking pop; connecting stays quick.
# The layer's pool also gets a short retry: channels-redis builds its own pool, which has none,
# so after a Redis restart the first command on each pooled (now dead) socket failed, and with it
# the next WebSocket handshake (HTTP 500) or a generation's frame.
if REDIS_URL:
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
        {
            "address": REDIS_URL,
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            # redis-py 8 caps a pool at 100 connections and then fails (MaxConnectionsError)
            # rather than waiting.
            "max_connections": env_int("R1CHAT_REDIS_MAX_CONNECTIONS", 1000),
        }
    ]
