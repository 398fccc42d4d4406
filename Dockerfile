# The project's image: one image, three commands (gateway, streams worker, projections worker).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml requirements.lock ./
COPY config config
COPY runtime runtime
COPY schemas schemas
COPY streams streams
COPY projections projections
COPY gateway gateway
COPY migrations migrations
# The gateway serves the OpenAPI and AsyncAPI files of docs/ (gateway/docs.py reads ../docs).
COPY docs docs
RUN pip install -c requirements.lock . && useradd --system messenger && mkdir -p /app/.data && chown messenger /app/.data
USER messenger
EXPOSE 8080 6066
CMD ["python", "-m", "gateway"]
