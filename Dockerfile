# One image for the API and the worker; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY api ./api
COPY workflows ./workflows
COPY activities ./activities
COPY ttelgo ./ttelgo
COPY migrations ./migrations
COPY alembic.ini worker.py ./
RUN pip install --no-cache-dir . && useradd --system ttelgo
USER ttelgo
EXPOSE 8000
# Served by api.serve: uvicorn with the limits from the settings (keep-alive, request-head size).
ENV API_HOST=0.0.0.0 API_PORT=8000
CMD ["python", "-m", "api.serve"]
