"""One turn of a long conversation through the proxy with a real SDK: its usage as JSON.

usage: retention_client.py anthropic|openai BASE_URL API_KEY CONVERSATION_ID TURN [RETENTION]
The system prompt is long enough for the models' minimum cacheable prefix (1 024 tokens);
TURN earlier exchanges come before the new question, as an agent's history does.
RETENTION (openai only) is passed as the SDK's own `prompt_cache_retention`.
Extra request headers (x-warming, ...) come as a JSON object in SDK_EXTRA_HEADERS.
"""
import json
import os
import sys

provider, base_url, api_key, conversation, turn = sys.argv[1:6]
retention = sys.argv[6] if len(sys.argv) > 6 else None
headers = {"x-conversation-id": conversation}
headers.update(json.loads(os.environ.get("SDK_EXTRA_HEADERS", "{}")))
SYSTEM = "You keep long agent sessions going and answer in a word. " * 120
history = []
for i in range(int(turn)):
    history += [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]
question = {"role": "user", "content": f"Question {turn}?"}

if provider == "anthropic":
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, default_headers=headers)
    # As coding agents do: a breakpoint on the system prompt and one on the
    # newest message, so each turn caches what it added.
    last = {"role": "user", "content": [{"type": "text", "text": question["content"],
                                         "cache_control": {"type": "ephemeral"}}]}
    message = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=12,
        system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        messages=history + [last],
    )
    print(json.dumps({"usage": message.usage.model_dump()}, sort_keys=True))
else:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, default_headers=headers)
    args = dict(model="gpt-4.1", max_tokens=12,
                messages=[{"role": "system", "content": SYSTEM}] + history + [question])
    if retention:
        args["prompt_cache_retention"] = retention
    response = client.chat.completions.create(**args)
    print(json.dumps({"usage": response.usage.model_dump()}, sort_keys=True))
