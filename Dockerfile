# The ticker's application image: app servers (python -m dashboard.serve), runfeed, and the
# one-shot migrate step of docker-compose.yml all run it. Dependencies come from uv.lock exactly.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=dashboard.settings \
    DJANGO_STATIC_ROOT=/app/staticfiles

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app

# The locked dependencies first (a layer that changes only with the lock), without dev tools;
# psycopg (binary wheels, no compiler) for DATABASE_URL=postgres://… is one of them.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

COPY . .

# Static files into the image (served by the app itself with TICKER_SERVE_STATIC=1); the
# compose migrate step copies them to the volume nginx serves. The key is for this step only.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v0

RUN useradd --system --uid 10001 --home-dir /app ticker \
    && mkdir -p /app/var /srv/static \
    && chown ticker /app/var /srv/static
USER ticker

EXPOSE 8000
CMD ["python", "-m", "dashboard.serve", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
