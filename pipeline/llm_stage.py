"""The LLM stage: the model answers what no dialog took, with the session's tools.

It runs after the dialog stage, for a message no dialog waits for (and, as in General Bots,
for the first message of a session once the start dialog ran to its end). It builds the
conversation (:mod:`pipeline.conversation`) and runs the tool loop (:mod:`pipeline.tool_loop`)
over the bot's providers, which were built when the bot loaded.  A message that answers a
tool waiting at HEAR resumes that tool first.

With no provider configured, the stage answers from the knowledge base when it has one (the
``knowledge`` seam) and otherwise leaves the turn to the reply stage's Not Understood reply.

A provider that does not answer (a timeout, 429 or 5xx after the provider layer's retries and
fallbacks, a refused request, a cut stream) gets the user a clear reply and is logged with the
provider and its HTTP status; the turn then completes as usual.  It is not retried: sending
the message through the model again would not go better, and the user already has an answer.

The semantic cache (:mod:`pipeline.llm_cache`, ``llm-cache`` in config.csv) answers before
the knowledge base is searched and the model asked, and keeps the model's answer after, but
only for a request it can key whole.  That is a question whose request carries no history
(the first user message the model sees in the conversation, or a bot with ``history-limit``
0: a follow-up such as "and the second one?" means something else in every conversation),
no attachment, no tool waiting on HEAR; everything else the model reads (system prompt,
``SET CONTEXT`` text, tools offered, knowledge-base collections and version) is part of the
entry's scope, so a context written for one user can only ever answer that same context.
Only an answer the model gave in one request, calling no tool and not cut by its token
limit, is kept.  A cached answer streams through the reply sink like the model's, and its
history row records 0 tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pipeline.bots import BotModel
from pipeline.conversation import (
    Conversation,
    Knowledge,
    KnowledgePassage,
    KnowledgeQuery,
    build_conversation_off_loop,
    context_text,
    history_messages,
    system_prompt,
)
from pipeline.dialog import input_for_hear
from pipeline.llm import LLMError, Message, ToolDefinition, UserMessage
from pipeline.llm_cache import (
    AnswerRecorder,
    CacheRequest,
    CacheSettings,
    LLMCache,
    Lookup,
    stream_pieces,
)
from pipeline.media_content import NO_VISION_REPLY, ModelMedia, for_the_model, is_image
from pipeline.session_state import SessionState, SessionStateError, read_state, write_state
from pipeline.tool_loop import (
    DEFAULT_MAX_ROUNDS,
    PendingTool,
    ToolLoop,
    offered_tools,
    tool_definitions,
)
from pipeline.turn import Next, Stage, Turn

log = logging.getLogger(__name__)

LLM_ERROR_REPLY = (
    "Sorry, I cannot answer right now: the language model is not responding. "
    "Please try again in a moment."
)
NO_LLM_NOTE = (
    "(Generative answers need a language model, and none is configured for this bot: set "
    "llm-provider, llm-key and llm-model in its config.csv, or OPENAI_API_KEY, "
    "ANTHROPIC_API_KEY or LLM_URL in the environment.)"
)
NO_LLM_PASSAGES = 3
MAX_CACHED_QUESTION = 2000  # characters; a longer message is not worth keying


def answer_without_llm(passages: Sequence[KnowledgePassage]) -> str:
    """The reply from knowledge-base passages alone: the best ones with their sources."""
    parts = ["Here is what I found:"]
    for passage in passages[:NO_LLM_PASSAGES]:
        parts.append(f"{passage.text.strip()}\n\n— {passage.citation}")
    parts.append(NO_LLM_NOTE)
    return "\n\n".join(parts)


def llm_stage(*, knowledge: Knowledge | None = None) -> Stage:
    """The stage, searching ``knowledge`` (``None``: no knowledge base) for each question."""

    async def stage(turn: Turn, next_: Next) -> None:
        session = turn.session
        assert session is not None, "the LLM stage runs after the session stage"
        try:
            state = read_state(session)
        except SessionStateError:  # the dialog stage logged it and started over
            state = SessionState()
        pending = _take_pending(turn, state)
        model = turn.bot.model
        if model is None:
            if pending is not None:
                log.warning(
                    "bot %s has no LLM any more: the tool %s waiting in session %s is dropped",
                    turn.bot.name,
                    pending.call.name,
                    session.id,
                )
            await _without_model(turn, state, knowledge, next_)
            return
        question = pending.question if pending is not None else turn.text
        try:
            await _with_model(turn, model, state, knowledge, question, pending)
        except LLMError as e:
            log.error(
                "llm failed bot=%s session=%s message=%s provider=%s status=%s: %s",
                turn.bot.name,
                session.id,
                turn.message.external_id,
                e.provider,
                e.status,
                e,
            )
            await turn.say(LLM_ERROR_REPLY)

    return stage


def _take_pending(turn: Turn, state: SessionState) -> PendingTool | None:
    """The tool loop the session saved at a HEAR, taken out of the state (it is saved again
    if the tool asks again)."""
    raw = state.pending_tool
    if raw is None:
        return None
    state.pending_tool = None
    assert turn.session is not None
    write_state(turn.session, state)
    try:
        return PendingTool.from_json(raw)
    except ValueError as e:
        log.warning(
            "session %s: a waiting tool could not be read (%s): dropped", turn.session.id, e
        )
        return None


async def _search(
    knowledge: Knowledge | None, turn: Turn, state: SessionState, question: str
) -> Sequence[KnowledgePassage]:
    if knowledge is None or not question.strip():
        return ()
    query = KnowledgeQuery(turn.bot.name, question, state.searched_collections())
    try:
        return await knowledge(query)
    except Exception:  # the answer can do without passages; the failure is logged
        log.exception("knowledge search failed bot=%s: answering without passages", turn.bot.name)
        return ()


async def _without_model(
    turn: Turn, state: SessionState, knowledge: Knowledge | None, next_: Next
) -> None:
    if any(is_image(m) for m in turn.media):
        await turn.say(NO_VISION_REPLY)  # what the bot needs to understand images
        if not turn.text.strip():
            return
    passages = await _search(knowledge, turn, state, turn.text)
    if not passages:
        await next_(turn)  # the Not Understood reply
        return
    await turn.say(answer_without_llm(passages))


async def _history(turn: Turn, model: BotModel, pending: PendingTool | None) -> list[Message]:
    """The last ``history-limit`` stored messages before the question.

    A resumed loop's question and the rows after it (the waiting tool's prompts and the
    user's answers) are left out: the saved exchange stands for them.
    """
    session = turn.session
    assert session is not None
    if not session.stored:
        return []
    limit = model.history_limit
    trailing = pending.trailing if pending is not None else 0
    entries = await turn.services.conversations.history(session.id, limit=limit + trailing)
    if trailing:
        entries = entries[:-trailing] if len(entries) > trailing else []
    return history_messages(entries[-limit:] if limit > 0 else [])


def _model_identity(model: BotModel) -> list[list[object]]:
    """What of the bot's providers decides an answer, for the cache's scope."""
    return [
        [p.kind, p.base_url, p.model, p.temperature, p.max_tokens] for p in model.settings.providers
    ]


@dataclass(frozen=True, slots=True)
class _CacheUse:
    """The cache as one turn uses it: the bot's settings and what the lookup found."""

    cache: LLMCache
    settings: CacheSettings
    lookup: Lookup

    async def keep(self, answer: str) -> None:
        await self.cache.store(self.lookup, answer, self.settings)


async def _cache_lookup(
    turn: Turn,
    model: BotModel,
    state: SessionState,
    question: str,
    *,
    pending: PendingTool | None,
    history: Sequence[Message],
    system: str,
    context: str | None,
    tools: Sequence[ToolDefinition],
) -> _CacheUse | None:
    """The cache's lookup, when the bot has the cache on and the request can be keyed."""
    cache = turn.services.llm_cache
    if cache is None:
        return None
    settings = cache.settings(turn.bot.name, turn.bot.package.config)
    if not settings.enabled:
        return None
    if (
        pending is not None
        or turn.message.attachments
        or any(isinstance(m, UserMessage) for m in history)
        or not question.strip()
        or len(question) > MAX_CACHED_QUESTION
    ):
        cache.skipped(turn.bot.name)
        return None
    request = CacheRequest(
        bot=turn.bot.name,
        question=question,
        model=_model_identity(model),
        system=system,
        context=context,
        tools=tools,
        collections=state.knowledge_bases,
    )
    return _CacheUse(cache, settings, await cache.lookup(request, settings))


async def _say_cached(turn: Turn, answer: str) -> None:
    """A cached answer, delivered the way the tool loop delivers a streamed one."""
    await turn.release()  # what was said before goes out first
    for piece in stream_pieces(answer):
        await turn.sink.delta(piece)
    await turn.say(answer, tokens_used=turn.take_tokens())


async def _with_model(
    turn: Turn,
    model: BotModel,
    state: SessionState,
    knowledge: Knowledge | None,
    question: str,
    pending: PendingTool | None,
) -> None:
    media = ModelMedia((), (), (), unusable=False)
    if pending is None and turn.media:
        media = await for_the_model(turn, vision=model.vision)
        for reply in media.replies:
            await turn.say(reply)
        if media.unusable and not question.strip():
            return  # nothing left to answer: the user was told why
    history = await _history(turn, model, pending)
    tools = offered_tools(turn, state)
    definitions = tool_definitions(tools)
    system = system_prompt(turn.bot.system_prompt, state.system_prompt)
    context = context_text(state.context)
    cached = await _cache_lookup(
        turn,
        model,
        state,
        question,
        pending=pending,
        history=history,
        system=system,
        context=context,
        tools=definitions,
    )
    if cached is not None and cached.lookup.answer is not None:
        await _say_cached(turn, cached.lookup.answer)
        return
    passages = await _search(knowledge, turn, state, question)
    budget = max(model.context_window - model.answer_reserve, 1)

    async def build(exchange: Sequence[Message]) -> Conversation:
        conversation = await build_conversation_off_loop(
            system=system,
            context=context,
            passages=passages,
            history=history,
            question=question,
            tail=exchange,
            tools=definitions,
            images=media.images,
            documents=media.documents,
            counter=model.counter,
            budget=budget,
        )
        if conversation.document_pages_dropped:
            log.info(
                "bot %s: %d of the documents' pages left out to fit %d tokens",
                turn.bot.name,
                conversation.document_pages_dropped,
                budget,
            )
        if conversation.history_dropped or conversation.passages_dropped:
            log.info(
                "bot %s: %d history messages and %d passages left out to fit %d tokens",
                turn.bot.name,
                conversation.history_dropped,
                conversation.passages_dropped,
                budget,
            )
        return conversation

    max_rounds = turn.bot.package.config.integer("llm-tool-rounds", DEFAULT_MAX_ROUNDS)
    recorder = AnswerRecorder(model.provider) if cached is not None else None
    loop = ToolLoop(
        turn,
        model if recorder is None else replace(model, provider=recorder),
        state,
        tools,
        question=question,
        build=build,
        max_rounds=max_rounds if max_rounds > 0 else DEFAULT_MAX_ROUNDS,
        trailing=pending.trailing if pending is not None else 0,
    )
    if pending is not None:
        await loop.resume(pending, input_for_hear(state, turn.text))
    else:
        await loop.run([])
    if cached is not None and recorder is not None and recorder.answer is not None:
        await cached.keep(recorder.answer)
