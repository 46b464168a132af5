"""Posts an Anthropic Messages request of SIZE_MB megabytes to URL with
Python's urllib, as a client that writes its whole body before reading the
answer does, and prints {"status": ..., "body": ...} as JSON."""
import json
import sys
import urllib.error
import urllib.request

url, size_mb, conversation = sys.argv[1], float(sys.argv[2]), sys.argv[3]
# One large text block, as a pasted log or a base64 screenshot would be.
text = "x" * int(size_mb * 1024 * 1024)
body = json.dumps({"model": "claude-test", "max_tokens": 5,
                   "messages": [{"role": "user", "content": text}]}).encode()
request = urllib.request.Request(url, data=body, method="POST", headers={
    "content-type": "application/json", "x-api-key": "sk-large-body-test",
    "x-conversation-id": conversation})
try:
    with urllib.request.urlopen(request, timeout=120) as answer:
        status, text = answer.status, answer.read().decode()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read().decode()
print(json.dumps({"status": status, "body": json.loads(text)}))
