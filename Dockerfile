# AgentAuth server image: the runtime dependencies of requirements/run.lock, run as a non-root user.
#   docker build -t agentauth .
#   docker run -p 8000:8000 -e AGENTAUTH_ISSUER_URL=https://auth.example.com -v agentauth-data:/data agentauth
# For replicas with PostgreSQL and Redis see deploy/compose.yaml. tests/e2e/test_container_files.py runs this
# file's ENTRYPOINT/CMD and HEALTHCHECK on the host as written.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements/run.lock requirements/run.lock
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN python -m pip install -c requirements/run.lock '.[server]' \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin agentauth \
    && mkdir -p /data && chown agentauth /data && chmod 0700 /data

USER 10001
ENV AGENTAUTH_DATA_DIR=/data \
    AGENTAUTH_HOST=0.0.0.0 \
    AGENTAUTH_PORT=8000
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('AGENTAUTH_PORT', '8000')}/ready\", timeout=2).status == 200 else 1)"]

ENTRYPOINT ["agentauth"]
CMD ["serve", "--log-level", "info"]
