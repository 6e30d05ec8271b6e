"""A user's images reach a vision model through the real ``openai`` and ``anthropic`` SDKs:
an ``image_url`` part with a data URL, an Anthropic base64 ``image`` block; a provider not
configured as vision-capable gets a note in their place, never the bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.llm import (
    AnthropicProvider,
    CompletionRequest,
    ImagePart,
    OpenAIProvider,
    StreamDone,
    SystemMessage,
    UserMessage,
    llm_settings,
)
from tests.llm import fake_anthropic, fake_openai
from tests.llm.fake_anthropic import FakeAnthropic
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import Answer
from tests.llm.vision import anthropic_images, openai_images, user_text
from tests.pipeline.media_samples import image_of, sideways_photo

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def request(*images: ImagePart) -> CompletionRequest:
    return CompletionRequest(
        [SystemMessage("Describe."), UserMessage("What is in this picture?", images)]
    )


@pytest.fixture
async def openai_pair(openai_server: FakeOpenAI) -> AsyncIterator[dict[bool, OpenAIProvider]]:
    pair = {
        vision: OpenAIProvider(
            api_key=fake_openai.API_KEY,
            model="gpt-4o",
            base_url=f"{openai_server.url}/v1",
            timeout=5,
            vision=vision,
        )
        for vision in (True, False)
    }
    yield pair
    for provider in pair.values():
        await provider.aclose()


@pytest.fixture
async def anthropic_pair(
    anthropic_server: FakeAnthropic,
) -> AsyncIterator[dict[bool, AnthropicProvider]]:
    pair = {
        vision: AnthropicProvider(
            api_key=fake_anthropic.API_KEY,
            model="claude-test",
            base_url=anthropic_server.url,
            timeout=5,
            vision=vision,
        )
        for vision in (True, False)
    }
    yield pair
    for provider in pair.values():
        await provider.aclose()


async def test_openai_gets_image_url_parts_with_data_urls(
    openai_server: FakeOpenAI, openai_pair: dict[bool, OpenAIProvider]
) -> None:
    photo = sideways_photo()
    openai_server.script(Answer(text=("A red and blue card.",)), Answer(text=("ok",)))
    answer = await openai_pair[True].complete(
        request(ImagePart(photo, "image/jpeg"), ImagePart(PNG_1PX, "image/png"))
    )
    assert answer.text == "A red and blue card."
    body = openai_server.calls[0].body
    assert openai_images(body) == [("image/jpeg", photo), ("image/png", PNG_1PX)]
    assert user_text(body) == "What is in this picture?"
    assert image_of(openai_images(body)[0][1]).size == (400, 200)
    # Streamed the same way.
    events = [e async for e in openai_pair[True].stream(request(ImagePart(photo, "image/jpeg")))]
    assert isinstance(events[-1], StreamDone)
    assert openai_images(openai_server.calls[1].body) == [("image/jpeg", photo)]


async def test_anthropic_gets_base64_image_blocks_before_the_text(
    anthropic_server: FakeAnthropic, anthropic_pair: dict[bool, AnthropicProvider]
) -> None:
    photo = sideways_photo()
    anthropic_server.script(Answer(text=("Two colours.",)))
    answer = await anthropic_pair[True].complete(request(ImagePart(photo, "image/jpeg")))
    assert answer.text == "Two colours."
    body = anthropic_server.calls[0].body
    assert anthropic_images(body) == [("image/jpeg", photo)]
    [user] = body["messages"]
    assert [block["type"] for block in user["content"]] == ["image", "text"]


async def test_a_provider_without_vision_gets_a_note_and_no_bytes(
    openai_server: FakeOpenAI,
    openai_pair: dict[bool, OpenAIProvider],
    anthropic_server: FakeAnthropic,
    anthropic_pair: dict[bool, AnthropicProvider],
) -> None:
    openai_server.script(Answer(text=("I cannot see it.",)))
    anthropic_server.script(Answer(text=("I cannot see it.",)))
    image = ImagePart(sideways_photo(), "image/jpeg")
    await openai_pair[False].complete(request(image, image))
    await anthropic_pair[False].complete(request(image))
    sent_openai, sent_anthropic = openai_server.calls[0].body, anthropic_server.calls[0].body
    assert openai_images(sent_openai) == [] and anthropic_images(sent_anthropic) == []
    assert user_text(sent_openai) == (
        "What is in this picture?\n\n[The user sent 2 images here, which this model cannot see.]"
    )
    assert user_text(sent_anthropic).endswith(
        "[The user sent an image here, which this model cannot see.]"
    )


@pytest.mark.parametrize(
    ("rows", "environ", "expected"),
    [
        ({"llm-provider": "openai", "llm-key": "k", "llm-vision": "true"}, {}, [True]),
        ({"llm-provider": "openai", "llm-key": "k"}, {}, [False]),
        (
            {
                "llm-provider": "anthropic",
                "llm-key": "k",
                "llm-vision": "yes",
                "llm-fallback-provider": "groq",
                "llm-fallback-key": "g",
                "llm-fallback-model": "llama",
            },
            {},
            [True, False],
        ),
        ({"llm-vision": "true"}, {"OPENAI_API_KEY": "sk"}, [True]),  # the default provider
        (
            {},
            {"LLM_URL": "http://127.0.0.1:9/v1", "LLM_KEY": "k", "LLM_MODEL": "qwen2.5-vl"}
            | {"LLM_VISION": "true"},
            [True],
        ),
    ],
)
def test_vision_is_configured_per_provider(
    rows: dict[str, str], environ: dict[str, str], expected: list[bool]
) -> None:
    settings = llm_settings(rows, environ)
    assert [p.vision for p in settings.providers] == expected
