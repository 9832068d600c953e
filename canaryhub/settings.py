"""CanaryHub settings: one file, read from the environment (12-factor).

Every value has a safe embedded default so that `make run` works with nothing but Python:
SQLite, Celery on kombu's filesystem transport, the push metric provider and the file router.
Production mode (CANARYHUB_ENV=production) refuses to start on a default secret key, DEBUG or
without a signing-key directory.
"""

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env.str("CANARYHUB_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded SQLite file, broker folder and beat schedule

DEFAULT_SECRET_KEY = "insecure-dev-key-change-me"  # noqa: S105 - recognised and refused in production

CANARYHUB_ENV = env.str("CANARYHUB_ENV", default="development")
if CANARYHUB_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"CANARYHUB_ENV must be development, test or production, not {CANARYHUB_ENV!r}")
PRODUCTION = CANARYHUB_ENV == "production"

SECRET_KEY = env.str("SECRET_KEY", default=DEFAULT_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and (SECRET_KEY == DEFAULT_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured("production needs SECRET_KEY set to a random value of at least 32 characters")
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("production refuses to start with DEBUG on")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"] if not PRODUCTION else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "auditlog",
    "axes",
    "governance",
    "releases",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Answers bearer-token GET /api/v1/assign without the rest of this chain (its docstring says why).
    "releases.canaries.assign.AssignFastPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # The Content-Security-Policy header (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
    # Names who acts when a password or a group membership changes (governance.audit.signals).
    "governance.audit.signals.ActingUserMiddleware",
    "canaryhub.problems.ApiProblemMiddleware",
    # Starts this web process's watchdog thread (canaryhub.watch): the rollback sweeper and the
    # dead-man's check run in every process, not only on beat and the queues they watch.
    "canaryhub.watch.WatchMiddleware",
    # Refuses logins from a locked-out user or address (django-axes; last, as its docs ask).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "canaryhub.urls"
WSGI_APPLICATION = "canaryhub.wsgi.application"
ASGI_APPLICATION = "canaryhub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "governance.access.context_processors.canaryhub",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'canaryhub.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so web, worker and beat sharing the
    # file wait for each other instead of failing with "database is locked" on lock upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- auth -------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "releases:home"  # the Inbox when work waits, else the register
LOGOUT_REDIRECT_URL = "login"

# --- i18n / static ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# plotly.min.js comes from the installed plotly package (canaryhub.staticfinders), not a CDN.
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "canaryhub.staticfinders.PackageFinder",
]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

if PRODUCTION:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    # HTTPS only, for a year (browsers remember it); `CANARYHUB_HSTS_SECONDS=0` turns it off.
    SECURE_HSTS_SECONDS = env.int("CANARYHUB_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("CANARYHUB_HSTS_INCLUDE_SUBDOMAINS", default=False)
SESSION_COOKIE_HTTPONLY = True
# Headers every answer carries (django.middleware.security / clickjacking): no MIME sniffing, no
# referrer sent to other sites, never framed by another site.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): pages run only the scripts and styles served from
# static/, never inline script, inline event handlers (onclick=, hx-on) or style= attributes;
# docs/security.md says why each source is there. Two hashes let in the only inline stylesheets
# Plotly creates: its empty <style> element, which it then fills through the CSSOM (not subject to
# the policy), and the fixed stylesheet its bundle adds for map charts. Any other <style> stays
# blocked; a Plotly upgrade that changes the second one fails tests/browser/test_csp.py.
PLOTLY_STYLE_HASHES = [
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",  # the empty string
    "'sha256-ji27qzEtxXZW+7dun6UwjHXJ18e6WAin1VvNtkzIE/o='",  # plotly.js 4.1 bundle's map stylesheet
]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", *PLOTLY_STYLE_HASHES],
        "img-src": ["'self'"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "governance.tokens.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "canaryhub.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["canaryhub.api.BoundedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "governance.audit.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CanaryHub API",
    "DESCRIPTION": "Staged canary releases of AI models: register, canaries, approvals, evidence.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # An Alertmanager alert's status (the receiver's input) beside the other "status" enums.
    # Several bodies have a `decision` field with their own choices, and two a `kind` (a token's, a custom
    # metric's): each set gets its own name.
    "ENUM_NAME_OVERRIDES": {
        "AlertStatusEnum": ["firing", "resolved"],
        "ReviewDecisionEnum": ["approve", "reject"],
        "CertificateDecisionEnum": ["issue", "return"],
        "RootCauseDecisionEnum": ["accept", "return"],
        "KindEnum": ["personal", "service account"],  # a token's kind (governance.tokens)
        "CustomMetricKindEnum": "monitoring.custom.KINDS",
        "CustomMetricWorseEnum": "monitoring.custom.DIRECTIONS",
    },
    # Each operation names its tag; these give the tags their order and a line of description.
    "TAGS": [
        {"name": "models", "description": "The model register: models, their owners, on-call and consumers."},
        {"name": "versions", "description": "Versions of a model, with their thresholds and metric configuration."},
        {"name": "canaries", "description": "Start a canary, follow it, sign its steps, roll it back or abort it."},
        {"name": "observations", "description": "Metrics pushed by models whose metrics come from `push`."},
        {"name": "assignment", "description": "Which version an application serves a user."},
        {"name": "incidents", "description": "Incidents, their root causes and the re-initiation of a version."},
        {"name": "threshold changes", "description": "Reviewed changes of a running canary's thresholds."},
        {"name": "metric changes", "description": "Reviewed changes of a version's metric configuration."},
        {"name": "certificates", "description": "Completion certificates and their verification."},
        {"name": "evidence", "description": "The MRM evidence bundle of a canary."},
        {"name": "audit", "description": "The hash-chained audit trail and its verification."},
        {"name": "notifications", "description": "Your own notification feed."},
        {"name": "tokens", "description": "API tokens: your personal tokens (shown once), revoked one by one."},
    ],
}
IDEMPOTENCY_KEY_TTL_S = env.int("CANARYHUB_IDEMPOTENCY_TTL_S", default=24 * 3600)

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_DIR = VAR_DIR / "celery"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Longer than the longest task's hard limit (the routers' reconcile, 340 s), so a slow task
    # is not handed out twice; short enough that a message reserved by a worker whose main
    # process died comes back within minutes, not an hour. (A lost rollback does not wait for
    # it: the sweeper re-drives the recorded decision within seconds.)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CANARYHUB_BROKER_VISIBILITY_TIMEOUT_S", default=600),
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged when it finishes, and a task whose worker process was killed is handed
# out again instead of being acknowledged as failed (brokers that redeliver: Redis, AMQP; the
# embedded filesystem broker deletes a message when it is taken, so there the sweeper re-drives).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A worker reconnects to a broker that came back at once, not after a growing backoff.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Rollback pushes run on their own queue so that a backlog of other work never delays them.
CELERY_TASK_DEFAULT_QUEUE = "celery"

# --- notifications ----------------------------------------------------------------------------
# Who hears what: monitoring.notifications.recipients. Every endpoint is a setting, so tests and
# air-gapped installations point them at their own receivers. With no SMTP host, e-mails are
# written one file per message under var/mail/ (the launcher says so at start-up).
EMAIL_HOST = env.str("CANARYHUB_SMTP_HOST", default="")
EMAIL_PORT = env.int("CANARYHUB_SMTP_PORT", default=25)
EMAIL_HOST_USER = env.str("CANARYHUB_SMTP_USER", default="")
EMAIL_HOST_PASSWORD = env.str("CANARYHUB_SMTP_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("CANARYHUB_SMTP_STARTTLS", default=False)
EMAIL_FILE_PATH = str(VAR_DIR / "mail")
EMAIL_BACKEND = ("django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST
                 else "django.core.mail.backends.filebased.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("CANARYHUB_MAIL_FROM", default="CanaryHub <canaryhub@localhost>")
NOTIFY_BASE_URL = env.str("CANARYHUB_BASE_URL", default="http://127.0.0.1:8000")  # links in messages
NOTIFY_LIST_ID = env.str("CANARYHUB_MAIL_LIST_ID", default="CanaryHub notifications <canaryhub.localhost>")
NOTIFY_SLACK_WEBHOOK_URL = env.str("CANARYHUB_SLACK_WEBHOOK_URL", default="")  # the team channel
NOTIFY_PAGERDUTY_URL = env.str("CANARYHUB_PAGERDUTY_URL", default="https://events.pagerduty.com/v2/enqueue")
NOTIFY_PAGERDUTY_ROUTING_KEY = env.str("CANARYHUB_PAGERDUTY_ROUTING_KEY", default="")
NOTIFY_WEBHOOK_SECRET = env.str("CANARYHUB_NOTIFY_WEBHOOK_SECRET", default=SECRET_KEY)
NOTIFY_ON_CALL_ADDRESS = env.str("CANARYHUB_ON_CALL_ADDRESS", default="")
NOTIFY_COMMITTEE_ADDRESS = env.str("CANARYHUB_COMMITTEE_ADDRESS", default="")
NOTIFY_TIME_ZONE = env.str("CANARYHUB_NOTIFY_TIME_ZONE", default="UTC")
NOTIFY_BUSINESS_HOURS = env.str("CANARYHUB_BUSINESS_HOURS", default="09-17")  # local, [start, end)
NOTIFY_BUSINESS_DAYS = env.str("CANARYHUB_BUSINESS_DAYS", default="1-5")  # ISO weekdays
NOTIFY_SUMMARY_EVERY_H = env.int("CANARYHUB_SUMMARY_EVERY_H", default=4)
# Registered webhook/Slack URLs may not reach private or loopback addresses unless this is set.
NOTIFY_ALLOW_PRIVATE_URLS = env.bool("CANARYHUB_NOTIFY_ALLOW_PRIVATE_URLS", default=False)
NOTIFY_SEND_INTERVAL_S = env.float("CANARYHUB_NOTIFY_SEND_INTERVAL_S", default=2.0)
NOTIFY_SEND_TIMEOUT_S = env.float("CANARYHUB_NOTIFY_SEND_TIMEOUT_S", default=5.0)
NOTIFY_CLAIM_TIMEOUT_S = env.float("CANARYHUB_NOTIFY_CLAIM_TIMEOUT_S", default=60.0)
NOTIFY_RETRY_BASE_S = env.float("CANARYHUB_NOTIFY_RETRY_BASE_S", default=5.0)
NOTIFY_RETRY_CAP_S = env.float("CANARYHUB_NOTIFY_RETRY_CAP_S", default=60.0)
NOTIFY_DEADLINE_S = env.float("CANARYHUB_NOTIFY_DEADLINE_S", default=3600.0)  # then dead-lettered

# --- integrations -----------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
PROMETHEUS_URL = env.str("PROMETHEUS_URL", default="")
PROMETHEUS_TIMEOUT_S = env.float("CANARYHUB_PROMETHEUS_TIMEOUT_S", default=5.0)
# TLS to Prometheus is verified: against this CA bundle (a PEM file) when set, else the system's
# CAs. PROMETHEUS_TLS_INSECURE=true switches verification off (explicit opt-out; refused in production).
PROMETHEUS_CA_BUNDLE = env.str("CANARYHUB_PROMETHEUS_CA_BUNDLE", default="")
PROMETHEUS_TLS_INSECURE = env.bool("CANARYHUB_PROMETHEUS_TLS_INSECURE", default=False)
if PRODUCTION and PROMETHEUS_TLS_INSECURE:
    raise ImproperlyConfigured("production refuses CANARYHUB_PROMETHEUS_TLS_INSECURE")

# Router adapters by kind; each canary names the kind it uses. The embedded default writes the
# split as JSON into a folder (one file per model) and logs every split it was told.
CANARYHUB_ROUTERS = {
    "file": {"path_dir": env.str("CANARYHUB_ROUTER_FILE_DIR", default=str(VAR_DIR / "router"))},
}
# The nginx and webhook routers, when used without registering them in the UI: JSON objects of
# their keyword arguments (releases/routers/nginx.py, webhook.py), e.g.
# CANARYHUB_ROUTER_WEBHOOK='{"url": "https://mesh.example/canary", "secret": "…", "timeout_s": 5}'.
for _kind in ("nginx", "webhook"):
    _router_config = env.json(f"CANARYHUB_ROUTER_{_kind.upper()}", default={})
    if _router_config:
        CANARYHUB_ROUTERS[_kind] = _router_config
# Router configs registered on the Routers page may only choose upstreams, headers and timeouts:
# the nginx router's programs, files and URLs (main_conf, nginx_bin, pid_file, readback_url)
# come from CANARYHUB_ROUTER_NGINX above, and the folder a registered file or nginx router
# writes must lie inside one of these folders (default: the file router's folder and nginx's
# conf_dir).
CANARYHUB_ROUTER_TARGET_DIRS = env.list(
    "CANARYHUB_ROUTER_TARGET_DIRS",
    default=[str(c["path_dir" if k == "file" else "conf_dir"]) for k, c in CANARYHUB_ROUTERS.items()
             if c.get("path_dir" if k == "file" else "conf_dir")],
)
# How long a push that is not a rollback retries before it counts as a router failure (the canary
# falls back to production and is suspended until the router answers again), seconds.
ROUTER_PUSH_DEADLINE_S = env.float("CANARYHUB_ROUTER_PUSH_DEADLINE_S", default=60.0)
# Networks (CIDRs) a router may send requests to although they are private, loopback or
# link-local (the webhook URL, nginx's readback_url). Empty: only public addresses. A local nginx
# read back on 127.0.0.1 needs "127.0.0.0/8" here.
CANARYHUB_ROUTER_ALLOWED_NETWORKS = env.list("CANARYHUB_ROUTER_ALLOWED_NETWORKS", default=[])
# The key of the sticky store's hashed user ids (HMAC-SHA256): set it apart from SECRET_KEY to
# rotate one without the other (a change forgets which users were on the canary).
ASSIGNMENT_HASH_KEY = env.str("CANARYHUB_ASSIGNMENT_HASH_KEY", default=SECRET_KEY)
# How long a web process reuses a model's active split and a token's principal in /api/v1/assign.
CANARYHUB_ASSIGN_CACHE_S = env.float("CANARYHUB_ASSIGN_CACHE_S", default=1.0)

# --- the canary pattern's clocks (API.md) -----------------------------------------------------
CLOCK_SPEED = env.float("CANARYHUB_CLOCK_SPEED", default=1.0)
if CLOCK_SPEED < 1:
    raise ImproperlyConfigured("CANARYHUB_CLOCK_SPEED must be 1 or more (it only shortens durations)")
if PRODUCTION and CLOCK_SPEED != 1:
    raise ImproperlyConfigured("production refuses a CANARYHUB_CLOCK_SPEED other than 1")
# The built-in traffic simulator (`manage.py simulate`, started by `make run`) sends its requests
# per second multiplied by this scale. By default it follows the clock speed, so on a demo clock
# the simulated traffic is as much heavier as durations are shorter: a stage gathers the canary
# requests its gates need within its (shortened) residence, with the pattern's rules unchanged.
# Said in the page banner and recorded in the audit trail (simulator.started, canary.initiated).
SIMULATOR_TRAFFIC_SCALE = env.float("CANARYHUB_SIMULATOR_TRAFFIC_SCALE", default=CLOCK_SPEED)
if SIMULATOR_TRAFFIC_SCALE <= 0:
    raise ImproperlyConfigured("CANARYHUB_SIMULATOR_TRAFFIC_SCALE must be a positive number")
SIMULATOR_RPS = env.float("CANARYHUB_SIMULATOR_RPS", default=50.0)
# The ports the simulator's production and canary servers export their metrics on; 0 (default):
# a free port each, said at start, so a second copy never clashes with the first. Set them when a
# Prometheus scrapes the simulator (docker compose does).
SIMULATOR_PRODUCTION_PORT = env.int("CANARYHUB_SIMULATOR_PRODUCTION_PORT", default=0)
SIMULATOR_CANARY_PORT = env.int("CANARYHUB_SIMULATOR_CANARY_PORT", default=0)
# The address they listen on: loopback, or 0.0.0.0 in a container another one scrapes.
SIMULATOR_HOST = env.str("CANARYHUB_SIMULATOR_HOST", default="127.0.0.1")
EVALUATION_WINDOW_S = env.int("CANARYHUB_EVALUATION_WINDOW_S", default=300)
EVALUATION_CADENCE_S = env.int("CANARYHUB_EVALUATION_CADENCE_S", default=60)
STALENESS_LIMIT_S = env.int("CANARYHUB_STALENESS_LIMIT_S", default=300)
DEADMAN_LIMIT_S = env.int("CANARYHUB_DEADMAN_LIMIT_S", default=600)
# After 100 %: how long the post-promotion watch lasts and the previous version is kept on hot
# standby for a revert (DESIGN "After 100%": 48-72 h; CANARYHUB_CLOCK_SPEED shortens it like
# every other duration).
HOT_STANDBY_HOURS = env.float("CANARYHUB_HOT_STANDBY_HOURS", default=48.0)
if not 48 <= HOT_STANDBY_HOURS <= 72:
    raise ImproperlyConfigured("CANARYHUB_HOT_STANDBY_HOURS must be between 48 and 72")
# A pushed metric window may end at most this far after the server's clock (and no earlier than
# STALENESS_LIMIT_S ago): a window "ending" in the future would count in every evaluation.
OBSERVATION_CLOCK_SKEW_S = env.int("CANARYHUB_OBSERVATION_CLOCK_SKEW_S", default=60)
# The rollback SLO (decision to router confirmed at 0 %), and how long a recorded rollback
# decision may wait for its queued task before any process's sweeper carries it out itself.
ROLLBACK_SLO_S = env.int("CANARYHUB_ROLLBACK_SLO_S", default=120)
ROLLBACK_SWEEP_AFTER_S = env.int("CANARYHUB_ROLLBACK_SWEEP_AFTER_S", default=10)
# The rollback watch: the error-rate test looked at between evaluations (0: off).
ROLLBACK_WATCH_S = env.int("CANARYHUB_ROLLBACK_WATCH_S", default=10)
if not 0 < ROLLBACK_SWEEP_AFTER_S < ROLLBACK_SLO_S:
    raise ImproperlyConfigured("CANARYHUB_ROLLBACK_SWEEP_AFTER_S must be positive and below CANARYHUB_ROLLBACK_SLO_S")
# Sticky-session poisoning (releases.canaries.services.sticky_sweep): a canary's share of the
# eligible users asked may differ from the percent in force by this many percentage points (plus
# three standard errors) before its sticky entries are cleared; below STICKY_MIN_SAMPLE users
# nothing is concluded. The sweep runs every STICKY_SWEEP_INTERVAL_S.
STICKY_SHARE_TOLERANCE_PP = env.float("CANARYHUB_STICKY_SHARE_TOLERANCE_PP", default=5.0)
STICKY_MIN_SAMPLE = env.int("CANARYHUB_STICKY_MIN_SAMPLE", default=200)
STICKY_SWEEP_INTERVAL_S = env.float("CANARYHUB_STICKY_SWEEP_INTERVAL_S", default=300.0)
if STICKY_SHARE_TOLERANCE_PP <= 0 or STICKY_MIN_SAMPLE <= 0 or STICKY_SWEEP_INTERVAL_S <= 0:
    raise ImproperlyConfigured("CANARYHUB_STICKY_SHARE_TOLERANCE_PP, CANARYHUB_STICKY_MIN_SAMPLE and "
                               "CANARYHUB_STICKY_SWEEP_INTERVAL_S must be positive")
# An urgent PATCH (pattern §3.2) holds each stage this long instead of 24 h / 48 h; the rest of
# the canary's rules (signatures, gates, rollback) are unchanged. Between 30 min and 4 h.
URGENT_RESIDENCE_MINUTES = env.int("CANARYHUB_URGENT_RESIDENCE_MINUTES", default=60)
if not 30 <= URGENT_RESIDENCE_MINUTES <= 240:
    raise ImproperlyConfigured("CANARYHUB_URGENT_RESIDENCE_MINUTES must be between 30 and 240")
# A router push recorded as queued that no worker took within this many seconds is marked lost
# by the sweeper, which pushes the split in force again (releases.canaries.loop.pushes_sweep).
ROUTER_PUSH_LOST_AFTER_S = env.int("CANARYHUB_ROUTER_PUSH_LOST_AFTER_S", default=120)
if ROUTER_PUSH_LOST_AFTER_S <= 0:
    raise ImproperlyConfigured("CANARYHUB_ROUTER_PUSH_LOST_AFTER_S must be a positive number of seconds")
# Evaluation snapshots, pushed observations and the notification outbox are automatically
# generated logs: kept at least 6 months (EU AI Act Art. 19; 184 days covers any six months)
# after their canary ends / after they were written, then pruned daily. Less is refused.
EVALUATION_RETENTION_DAYS = env.int("CANARYHUB_EVALUATION_RETENTION_DAYS", default=184)
OBSERVATION_RETENTION_DAYS = env.int("CANARYHUB_OBSERVATION_RETENTION_DAYS", default=184)
NOTIFICATION_RETENTION_DAYS = env.int("CANARYHUB_NOTIFICATION_RETENTION_DAYS", default=184)
for _name, _value in [
    ("CANARYHUB_EVALUATION_RETENTION_DAYS", EVALUATION_RETENTION_DAYS),
    ("CANARYHUB_OBSERVATION_RETENTION_DAYS", OBSERVATION_RETENTION_DAYS),
    ("CANARYHUB_NOTIFICATION_RETENTION_DAYS", NOTIFICATION_RETENTION_DAYS),
]:
    if _value < 184:
        raise ImproperlyConfigured(f"{_name} must be at least 184 days (the 6-month floor for automatically "
                                   "generated logs)")
# /readyz answers 503 when more messages than this wait on the rollbacks queue (a stuck worker).
READY_MAX_ROLLBACKS_QUEUED = env.int("CANARYHUB_READY_MAX_ROLLBACKS_QUEUED", default=10)
# How often each worker and web process runs its watchdog (canaryhub.watch: the rollback
# sweeper, the dead-man's check); 0 turns it off (the unit tests call the checks themselves).
WATCHDOG_INTERVAL_S = env.float("CANARYHUB_WATCHDOG_INTERVAL_S", default=5.0)
for _name, _value in [
    ("CANARYHUB_EVALUATION_WINDOW_S", EVALUATION_WINDOW_S),
    ("CANARYHUB_EVALUATION_CADENCE_S", EVALUATION_CADENCE_S),
    ("CANARYHUB_STALENESS_LIMIT_S", STALENESS_LIMIT_S),
    ("CANARYHUB_DEADMAN_LIMIT_S", DEADMAN_LIMIT_S),
]:
    if _value <= 0:
        raise ImproperlyConfigured(f"{_name} must be a positive number of seconds")
if DEADMAN_LIMIT_S <= EVALUATION_CADENCE_S:
    # At or below the cadence the switch trips between two healthy rounds, every minute.
    raise ImproperlyConfigured("CANARYHUB_DEADMAN_LIMIT_S must be longer than CANARYHUB_EVALUATION_CADENCE_S")

# Every periodic task, in one place. Beat only enqueues; each task claims its own work, so a
# second beat running by mistake is harmless.
CELERY_BEAT_SCHEDULE = {
    "reconcile-canaries": {
        "task": "releases.canaries.tasks.reconcile_canaries", "schedule": float(EVALUATION_CADENCE_S),
    },
    "reconcile-routers": {"task": "releases.canaries.tasks.reconcile_routers", "schedule": float(EVALUATION_CADENCE_S)},
    "prune-idempotency-keys": {"task": "governance.tokens.tasks.prune_idempotency_keys", "schedule": 3600.0},
    # Refusals of unknown callers are counted per minute and address; each finished minute
    # becomes one audit event per address.
    "flush-refusals": {"task": "governance.audit.tasks.flush_refusals", "schedule": 60.0},
    # The evaluator tick, and the dead-man's switch as a separate task on the rollbacks queue so
    # that a stuck evaluation queue cannot silence the check that watches it.
    "evaluate-canaries": {"task": "releases.canaries.tasks.evaluate_tick", "schedule": float(EVALUATION_CADENCE_S)},
    "deadman-check": {
        "task": "releases.canaries.tasks.deadman_check", "schedule": 60.0, "options": {"queue": "rollbacks"},
    },
    # The error-rate rollback test between evaluations (stores no evaluation).
    **({"rollback-watch": {
        "task": "releases.canaries.tasks.rollback_watch", "schedule": float(ROLLBACK_WATCH_S),
        "options": {"queue": "rollbacks", "expires": float(ROLLBACK_WATCH_S)},
    }} if ROLLBACK_WATCH_S > 0 else {}),
    # Beside the watchdog thread of every process: decided rollbacks whose task was lost.
    "sweep-rollbacks": {
        "task": "releases.canaries.tasks.sweep_rollbacks", "schedule": float(ROLLBACK_SWEEP_AFTER_S),
        "options": {"queue": "rollbacks"},
    },
    # The notification sender, on its own queue so a flood of summaries never delays a page.
    "send-notifications": {
        "task": "monitoring.notifications.tasks.send_notifications", "schedule": NOTIFY_SEND_INTERVAL_S,
        "options": {"queue": "notifications", "expires": NOTIFY_SEND_INTERVAL_S * 5},
    },
    "oncall-summary": {"task": "releases.canaries.tasks.oncall_summary", "schedule": 300.0},
    "sticky-sweep": {"task": "releases.canaries.tasks.sticky_sweep", "schedule": STICKY_SWEEP_INTERVAL_S},
    "root-cause-reminders": {"task": "governance.rootcause.tasks.root_cause_reminders", "schedule": 600.0},
    "prune-evaluations": {"task": "releases.canaries.tasks.prune_evaluations", "schedule": 24 * 3600.0},
    "prune-logs": {"task": "monitoring.tasks.prune_logs", "schedule": 24 * 3600.0},
    "prune-evidence-exports": {"task": "governance.evidence.tasks.prune_evidence_exports", "schedule": 24 * 3600.0},
    # Nightly (default 02:30 UTC): verify the whole audit chain and export its head.
    "verify-audit-chain": {
        "task": "governance.evidence.tasks.verify_audit_chain",
        "schedule": crontab(
            hour=env.str("CANARYHUB_AUDIT_VERIFY_HOUR", default="2"),
            minute=env.str("CANARYHUB_AUDIT_VERIFY_MINUTE", default="30"),
        ),
    },
}

# --- governance evidence ----------------------------------------------------------------------
# Where the nightly verification writes the audit chain head (files created with O_EXCL, never
# overwritten). Point it at a write-once store (WORM bucket mount, append-only share) that the
# database owner cannot rewrite.
AUDIT_HEAD_EXPORT_DIR = env.str("CANARYHUB_AUDIT_HEAD_EXPORT_DIR", default=str(VAR_DIR / "audit-heads"))
# The server's Ed25519 signing keys (canaryhub.keyring): the active private key and every public
# key, retired ones included. Kept by the deployment (a volume or secret mount readable only by
# CanaryHub's user); production names it explicitly and never generates a key by itself.
SIGNING_KEY_DIR = env.str("CANARYHUB_SIGNING_KEY_DIR", default="")
if PRODUCTION and not SIGNING_KEY_DIR:
    raise ImproperlyConfigured("production needs CANARYHUB_SIGNING_KEY_DIR: the directory of its signing keys "
                               "(create the first key there with 'manage.py signing_keys generate')")
SIGNING_KEY_DIR = SIGNING_KEY_DIR or str(VAR_DIR / "signing-keys")
EVIDENCE_EXPORT_DIR = env.str("CANARYHUB_EVIDENCE_EXPORT_DIR", default=str(VAR_DIR / "evidence-exports"))
# Export zips are copies built on request from records kept for RETENTION_DOCUMENTATION_DAYS, so
# they can be built again: the daily sweep deletes them after this many days.
EVIDENCE_EXPORT_RETENTION_DAYS = env.int("CANARYHUB_EVIDENCE_EXPORT_RETENTION_DAYS", default=7)
if EVIDENCE_EXPORT_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("CANARYHUB_EVIDENCE_EXPORT_RETENTION_DAYS must be at least 1")
# Retention floors of the EU AI Act: 6 months for automatically generated logs (audit events,
# incidents; Art. 19, 26(6)) and 10 years for technical documentation (certificates, evidence
# exports; Art. 18). Configurable upward only. (Evaluation snapshots: EVALUATION_RETENTION_DAYS.)
RETENTION_LOGS_DAYS = env.int("CANARYHUB_RETENTION_LOGS_DAYS", default=184)
RETENTION_DOCUMENTATION_DAYS = env.int("CANARYHUB_RETENTION_DOCUMENTATION_DAYS", default=3653)
for _name, _value, _floor in [
    ("CANARYHUB_RETENTION_LOGS_DAYS", RETENTION_LOGS_DAYS, 184),
    ("CANARYHUB_RETENTION_DOCUMENTATION_DAYS", RETENTION_DOCUMENTATION_DAYS, 3653),
]:
    if _value < _floor:
        raise ImproperlyConfigured(f"{_name} must be at least {_floor} days")

# --- logging ----------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.server": {"level": "WARNING"}},
}

# --- brute force: failed logins and failed signature re-authentications share these counters ---
AUTHENTICATION_BACKENDS = [
    "governance.access.reauth.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("CANARYHUB_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("CANARYHUB_LOGIN_LOCKOUT_MINUTES", default=15))
# Per user and, separately, per address: either reaching the limit locks.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_CALLABLE = "governance.access.reauth.lockout_response"


# --- Celery app -------------------------------------------------------------------------------
# Loaded with the settings so that every Django process (web, manage.py, tests) binds
# @shared_task to it; canaryhub/__init__.py no longer imports it (the CLI must not load Celery).
import canaryhub.celery  # noqa: E402, F401

