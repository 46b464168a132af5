"""The official `openai` SDK against llama.cpp's server, directly or through
warming's proxy: one greedy chat call, its text and usage as JSON.

usage: engine_client.py BASE_URL CONVERSATION_ID USER_TEXT
Extra request headers (e.g. x-warming) come as a JSON object in SDK_EXTRA_HEADERS.
"""
import json
import os
import sys

import openai

base_url, conversation, user = sys.argv[1:4]
headers = {"x-conversation-id": conversation}
headers.update(json.loads(os.environ.get("SDK_EXTRA_HEADERS", "{}")))
# ~1 500 tokens: above the minimum warming assumes a provider caches.
SYSTEM = "You are the engine test's assistant: answer briefly, plainly and with care. " * 80

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
