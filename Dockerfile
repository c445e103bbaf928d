# One image for every Lumeau service; the command picks the job
# (e.g. `ingest run`, `db migrate`).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --system --create-home --home-dir /var/lib/lumeau lumeau
WORKDIR /opt/lumeau
COPY pyproject.toml README.md ./
COPY edge ./edge
COPY gateway ./gateway
COPY backend ./backend
COPY simulators ./simulators
RUN pip install --no-cache-dir '.[api]'
USER lumeau
ENTRYPOINT ["lumeau"]
