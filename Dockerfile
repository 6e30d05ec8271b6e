FROM python:3.11-slim
WORKDIR /app
# ffmpeg: voice notes are decoded with it (pydub) for speech to text.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN pip install --no-cache-dir -e .
ENV BOTSERVER_BOTS=/app/templates
EXPOSE 8080
CMD ["botserver", "serve", "--host", "0.0.0.0", "--port", "8080"]
