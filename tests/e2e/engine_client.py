"""The official `openai` SDK against llama.cpp's server, directly or through
warming's proxy: one greedy chat call, its text and usage as JSON.

usage: engine_client.py BASE_URL CONVERSATION_ID USER_TEXT [openai|anthropic]
Extra request headers (e.g. x-warming) come as a JSON object in SDK_EXTRA_HEADERS;
with SDK_OWN_PREFIX set, the system prompt starts with the conversation id.
With `anthropic`, the official `anthropic` SDK speaks Messages (`/v1/messages`),
which llama.cpp's server serves too.
"""
import json
import os
import sys

base_url, conversation, user = sys.argv[1:4]
api = sys.argv[4] if len(sys.argv) > 4 else "openai"
headers = {"x-conversation-id": conversation}
headers.update(json.loads(os.environ.get("SDK_EXTRA_HEADERS", "{}")))
# ~1 500 tokens: above the minimum warming assumes a provider caches.
SYSTEM = "You are the engine test's assistant: answer briefly, plainly and with care. " * 80
if os.environ.get("SDK_OWN_PREFIX"):
    # A prefix of its own, so no other conversation's cache entry serves it.
    SYSTEM = f"[{conversation}] {SYSTEM}"

if api == "anthropic":
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key="sk-local-engine", max_retries=0,
                                 default_headers=headers, timeout=120)
    message = client.messages.create(
        model="gemma-3-270m", max_tokens=8, system=SYSTEM, extra_body={"temperature": 0},
        messages=[{"role": "user", "content": user}])
    print(json.dumps({
        "text": "".join(getattr(b, "text", "") for b in message.content),
        "prompt_tokens": message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0),
        "cached_tokens": message.usage.cache_read_input_tokens,
    }))
    sys.exit(0)

import openai

client = openai.OpenAI(base_url=base_url, api_key="sk-local-engine", max_retries=0,
                       default_headers=headers, timeout=120)
reply = client.chat.completions.create(
    model="gemma-3-270m",
    max_tokens=8,
    temperature=0,
    messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
)
usage = reply.usage
details = usage.prompt_tokens_details
print(json.dumps({
    "text": reply.choices[0].message.content,
    "prompt_tokens": usage.prompt_tokens,
    "cached_tokens": details.cached_tokens if details else None,
}))
