# CanaryHub image: web (gunicorn), Celery worker and Celery beat all run from it
# (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The code is imported from /app (templates/ and static/ sit beside it, where settings look).
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=canaryhub.settings

WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps . \
    # collectstatic needs no database nor secret; it runs with the development defaults.
    && python manage.py collectstatic --noinput --verbosity 0 \
    && useradd --system --uid 10001 --home-dir /app --no-create-home canaryhub \
    && mkdir -p /app/var/router /app/var/nginx-canary /app/var/signing-keys \
    && chown -R canaryhub:canaryhub /app/var

USER canaryhub
EXPOSE 8000
CMD ["gunicorn", "canaryhub.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
