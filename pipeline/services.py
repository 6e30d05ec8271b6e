"""What the stages may use of the world, injected by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.handoff import HandoffDesk
from pipeline.llm_cache import LLMCache
from pipeline.mail import SmtpMailer
from pipeline.media import MediaIntake
from pipeline.outbound_files import OutboundFiles
from pipeline.outbound_http import OutboundHttp
from pipeline.proactive import ProactiveSender
from pipeline.websites import WebsiteCrawler
from storage.base import ConversationStore, Locks, MemoryStore, TableStore


@dataclass(frozen=True, slots=True)
class Services:
    """The stores and providers a turn can reach.

    Only conversations and locks are needed to run a turn; a dialog keyword whose service is
    absent (``None``) fails with an error naming what is missing.
    """

    conversations: ConversationStore
    locks: Locks
    memory: MemoryStore | None = None  # SET/GET BOT MEMORY, SET/GET USER MEMORY
    tables: TableStore | None = None  # FIND, SAVE, INSERT, UPDATE, DELETE
    http: OutboundHttp | None = None  # GET/POST/PUT/PATCH/DELETE HTTP
    mail: SmtpMailer | None = None  # SEND MAIL
    proactive: ProactiveSender | None = None  # TALK TO
    llm_cache: LLMCache | None = None  # the semantic cache in front of the LLM stage
    handoffs: HandoffDesk | None = None  # TRANSFER TO HUMAN, and the agents' side
    websites: WebsiteCrawler | None = None  # USE WEBSITE (with the knowledge base)
    media: MediaIntake | None = None  # users' attachments fetched and kept (the media stage)
    files: OutboundFiles | None = None  # SEND FILE TO: the files dialogs send
