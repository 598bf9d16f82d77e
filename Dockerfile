# SafeSchool Link in one image: `safeschool run` is the entrypoint (deploy/compose.yaml runs it
# behind Caddy, with PostgreSQL 16). Slim Python, a non-root user, a health check on /healthz.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/safeschool safeschool

WORKDIR /opt/safeschool
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY schedules ./schedules
COPY storage ./storage
RUN pip install . && python -c "import bot.app"

USER safeschool
WORKDIR /var/lib/safeschool
# Listen on every interface inside the container (Caddy reaches it on the compose network);
# attachments and report files live in a volume.
ENV SAFESCHOOL_HTTP_HOST=0.0.0.0 \
    SAFESCHOOL_HTTP_PORT=8080 \
    SAFESCHOOL_MEDIA_DIR=/var/lib/safeschool/media
RUN mkdir -p /var/lib/safeschool/media
VOLUME ["/var/lib/safeschool/media"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

# SIGTERM drains what is in flight before the process exits (give it 30 s: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["safeschool", "run"]
