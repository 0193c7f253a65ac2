# The fragrance-ai service image (also runs the fake LLM server in docker-compose.yml).
#   docker build -t fragrance-ai .
#   docker run -p 8000:8000 fragrance-ai       # simulated models: the shipped default config
# Mount your own config at /config/llm_ensemble.yaml (docker-compose.yml does).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY fragrance_ai ./fragrance_ai
COPY pytest_guards ./pytest_guards
RUN pip install . \
    && mkdir -p /config \
    && cp fragrance_ai/configs/llm_ensemble.yaml /config/llm_ensemble.yaml

# run unprivileged; nothing is written at run time
USER nobody
WORKDIR /tmp
EXPOSE 8000
# docker-compose.yml defines the health checks (the same image serves on 8000, 8001 and 9000)
CMD ["fragrance-ai", "serve", "--host", "0.0.0.0", "--port", "8000", "--config", "/config/llm_ensemble.yaml"]
