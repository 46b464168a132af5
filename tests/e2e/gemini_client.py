"""Gemini through the proxy with Google's official SDK (google-genai): one call, its result as JSON.

usage: gemini_client.py BASE_URL API_KEY CONVERSATION_ID ACTION [ARG]
ACTION:
  turn TURN            a turn of a long conversation (implicit caching): the system
                       instruction is above Gemini 2.5 Flash's 2 048-token minimum; TURN
                       earlier exchanges come before the new question
  stream TURN          the same turn, streamed (server-sent events)
  create-cache TTL     an explicit cache of the long system instruction, living TTL seconds
  cached TURN CACHE    a turn reading explicit cache CACHE (TURN earlier exchanges after it)
  cached-stream TURN CACHE   the same, streamed
Extra request headers (x-warming, ...) come as a JSON object in SDK_EXTRA_HEADERS.
With GEMINI_VERTEX=1 the SDK speaks Vertex AI (project "proj", location "us-central1"), the
API key sent as its OAuth bearer token.
Prints {"usage": usage_metadata} for turns, {"name", "expireTime"} for a cache.
"""
import json
import os
import sys

from google import genai
from google.genai import types

base_url, api_key, conversation, action = sys.argv[1:5]
args = sys.argv[5:]
headers = {"x-conversation-id": conversation}
headers.update(json.loads(os.environ.get("SDK_EXTRA_HEADERS", "{}")))
http_options = types.HttpOptions(
    base_url=base_url,
    headers=headers,
    retry_options=types.HttpRetryOptions(attempts=1),
)
if os.environ.get("GEMINI_VERTEX") == "1":
    from google.oauth2.credentials import Credentials

    client = genai.Client(vertexai=True, project="proj", location="us-central1",
                          credentials=Credentials(api_key), http_options=http_options)
else:
    client = genai.Client(api_key=api_key, http_options=http_options)
MODEL = "gemini-2.5-flash"
SYSTEM = "You keep long agent sessions going and answer in a word. " * 200


def contents(turn):
    history = []
    for i in range(int(turn)):
        history += [
            types.Content(role="user", parts=[types.Part(text=f"Question {i}?")]),
            types.Content(role="model", parts=[types.Part(text=f"Answer {i}.")]),
        ]
    return history + [types.Content(role="user", parts=[types.Part(text=f"Question {turn}?")])]


def usage_of(response):
    return response.usage_metadata.model_dump(exclude_none=True)


if action in ("turn", "stream"):
    config = types.GenerateContentConfig(system_instruction=SYSTEM, max_output_tokens=12)
    call = dict(model=MODEL, contents=contents(args[0]), config=config)
elif action in ("cached", "cached-stream"):
    config = types.GenerateContentConfig(cached_content=args[1], max_output_tokens=12)
    call = dict(model=MODEL, contents=contents(args[0]), config=config)
elif action == "create-cache":
    cache = client.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            system_instruction=SYSTEM,
            contents=[types.Content(role="user", parts=[types.Part(text="The project's notes. " * 100)])],
            ttl=f"{args[0]}s",
        ),
    )
    print(json.dumps({"name": cache.name, "expireTime": cache.expire_time.isoformat()}))
    sys.exit(0)
else:
    sys.exit(f"unknown action {action}")

if action.endswith("stream"):
    last = None
    for chunk in client.models.generate_content_stream(**call):
        last = chunk
    print(json.dumps({"usage": usage_of(last)}, sort_keys=True))
else:
    print(json.dumps({"usage": usage_of(client.models.generate_content(**call))}, sort_keys=True))
