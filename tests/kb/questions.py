"""Labelled questions over the bundled bot's knowledge base: each names the files that answer it.

Worded as a user would ask, not copied from the documents.
"""

from __future__ import annotations

QUESTIONS: list[tuple[str, set[str]]] = [
    ("How do I connect my bot to Telegram?", {"telegram.md"}),
    ("Where do I put the token BotFather gave me?", {"telegram.md"}),
    ("Can I test Telegram on my laptop without a public address?", {"telegram.md"}),
    ("What rows does the Meta WhatsApp Cloud API channel need?", {"whatsapp.md"}),
    ("Why was my WhatsApp reply not sent after a day of silence?", {"whatsapp.md"}),
    ("How do I send SMS text messages with Twilio?", {"twilio.md"}),
    ("Which Twilio credentials go in the config file?", {"twilio.md"}),
    ("What happens when a channel is missing one of its settings?", {"channel-security.md"}),
    ("How are incoming webhooks verified?", {"channel-security.md"}),
    ("How can I keep API tokens out of the bot package?", {"config-csv.md"}),
    ("How do dialogs read values from config.csv parameters?", {"config-csv.md"}),
    ("How do I install and start the server?", {"getting-started.md"}),
    ("Do I need to install a database before the first run?", {"getting-started.md"}),
    ("What folders make up a bot package?", {"bot-packages.md"}),
    ("How do I reload a bot after editing it?", {"bot-packages.md"}),
    ("How do I call the bot from my own app over HTTP?", {"web-api.md"}),
    ("Can I stream the answer as server-sent events?", {"web-api.md"}),
    ("Will resending the same message run the turn twice?", {"web-api.md"}),
    ("Does the chat page remember the conversation after a reload?", {"chat-widget.md"}),
    ("How do I use OpenAI or a local Ollama model?", {"llm-providers.md"}),
    ("Which environment variable sets the Anthropic key for all bots?", {"llm-providers.md"}),
    ("Where do I put documents for the bot to answer from?", {"knowledge-base.md"}),
    ("Are PDF and Word files supported in the knowledge base?", {"knowledge-base.md"}),
    ("How do I turn a document collection on inside a dialog?", {"knowledge-base.md"}),
    ("Is there an embedding model that runs offline?", {"embeddings.md"}),
    ("How do I keep the knowledge base in a Qdrant server?", {"vector-backends.md", "scaling.md"}),
    ("How do I ask the user for their email address in a dialog?", {"basic-dialogs.md"}),
    ("How do I loop over a list in BASIC?", {"basic-dialogs.md"}),
    ("How do I show quick reply buttons?", {"basic-suggestions-memory.md"}),
    ("How can a dialog remember something about a user?", {"basic-suggestions-memory.md"}),
    ("How do I read rows from a CSV table in a dialog?", {"basic-suggestions-memory.md"}),
    ("How do I let the language model call one of my BASIC scripts?", {"basic-tools.md"}),
    ("Which command checks my .bas files for errors?", {"command-line.md", "troubleshooting.md"}),
    ("How do I run several gateway instances behind a load balancer?", {"scaling.md"}),
    ("Will a webhook delivered twice produce two replies?", {"scaling.md"}),
    ("What is the longest message Telegram accepts before splitting?", {"delivery-and-retries.md"}),
    ("What happens when the provider answers 429 too many requests?", {"delivery-and-retries.md"}),
    ("The bot keeps answering that it did not understand. Why?", {"troubleshooting.md"}),
    ("How can I check whether the server is healthy?", {"troubleshooting.md"}),
]
