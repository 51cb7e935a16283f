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
CMD ["uvicorn", "api.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
