# hotreload: serve a gitsheets data repository from memory, hot-reloaded.
# Build: docker build -t hotreload .      Run: see docs/deploy.md
# No git binary is installed: dulwich does all git work in-process. An ssh client is,
# for ssh remotes (CFP_DATA_SSH_KEY_FILE, GIT_SSH_COMMAND).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY simulator ./simulator
RUN python -m venv /opt/hotreload \
    && /opt/hotreload/bin/pip install --no-cache-dir .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="hotreload" \
      org.opencontainers.image.description="Serves a git-backed public data repository from memory and hot-reloads it"
# the distribution's current openssh-client: pinning a Debian revision breaks the build at its next update
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/hotreload /opt/hotreload
# uid and gid 10001, as deploy/statefulset.yaml's securityContext assumes
RUN groupadd --system --gid 10001 hotreload \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/hotreload --create-home hotreload
# MALLOC_ARENA_MAX: the server's threads share glibc's one heap (docs/deploy.md#memory)
ENV PATH=/opt/hotreload/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=1 \
    CFP_DATA_REPO_PATH=/var/lib/hotreload/data.git
# the bare clone lives here: mount a volume per replica (it is cloned at first start)
VOLUME ["/var/lib/hotreload"]
USER 10001:10001
WORKDIR /var/lib/hotreload
EXPOSE 8080
# ready once a snapshot is served (503 while the first build runs); never walks history
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/api/health', timeout=2)"]
ENTRYPOINT ["hotreload", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--threads", "8"]
