FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -e .
ENV BOTSERVER_BOTS=/app/templates
EXPOSE 8080
CMD ["botserver", "serve", "--host", "0.0.0.0", "--port", "8080"]
