"""A real SDK client for the proxy tests: one call, its parsed result as JSON.

usage: sdk_client.py anthropic|openai plain|stream|thinking|responses|responses-stream BASE_URL API_KEY [CONVERSATION_ID]
(thinking: Anthropic with extended thinking, budget 1024; responses: OpenAI Responses)
Extra request headers (e.g. x-warming) come as a JSON object in SDK_EXTRA_HEADERS.
"""
import json
import os
import sys

provider, mode, base_url, api_key = sys.argv[1:5]
conversation = sys.argv[5] if len(sys.argv) > 5 else None
headers = {"x-conversation-id": conversation} if conversation else {}
headers.update(json.loads(os.environ.get("SDK_EXTRA_HEADERS", "{}")))
SYSTEM = "You are the proxy test's assistant. " * 40

if provider == "anthropic":
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, default_headers=headers)
    args = dict(
        model="claude-test",
        max_tokens=12,
        system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Say something."}],
    )
    if mode == "thinking":
        args.update(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024})
        message = client.messages.create(**args)
        text = "".join(getattr(block, "text", "") for block in message.content)
    elif mode == "stream":
        with client.messages.stream(**args) as stream:
            text = "".join(stream.text_stream)
            message = stream.get_final_message()
    else:
        message = client.messages.create(**args)
        text = "".join(block.text for block in message.content)
    print(json.dumps({"text": text, "stop": message.stop_reason, "model": message.model,
                      "usage": message.usage.model_dump()}, sort_keys=True))
elif mode.startswith("responses"):
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, default_headers=headers)
    args = dict(
        model="gpt-test",
        instructions=SYSTEM,
        input=[{"role": "user", "content": "Say something."}],
        max_output_tokens=20,
        prompt_cache_key="proxy-test/" + (conversation or "none"),
    )
    if mode == "responses-stream":
        response = None
        for event in client.responses.create(stream=True, **args):
            if event.type == "response.completed":
                response = event.response
    else:
        response = client.responses.create(**args)
    print(json.dumps({"text": response.output_text, "stop": response.status,
                      "usage": response.usage.model_dump()}, sort_keys=True))
else:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, default_headers=headers)
    args = dict(
        model="gpt-test",
        max_tokens=12,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Say something."}],
    )
    if mode == "stream":
        text, usage, finish = "", None, None
        for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **args):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage.model_dump()
    else:
        response = client.chat.completions.create(**args)
        text, usage, finish = response.choices[0].message.content, response.usage.model_dump(), response.choices[0].finish_reason
    print(json.dumps({"text": text, "stop": finish, "usage": usage}, sort_keys=True))
