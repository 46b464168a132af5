//! Reads usage out of an answer as it streams past, without holding it back.

use serde_json::Value;
use warming_core::Usage;

use warming_service::provider_usage::parse_usage;

/// Most bytes of a non-streamed answer kept to read its usage at the end.
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

/// Watches the bytes of one answer: SSE events as they complete, or a whole
/// JSON body at the end.
#[derive(Debug)]
pub struct UsageWatch {
    /// Whether the answer is an SSE stream.
    sse: bool,
    /// Bytes not yet ending in a newline (SSE), or the whole body (JSON).
    buffer: Vec<u8>,
    /// Usage seen so far.
    usage: Option<Usage>,
}

impl UsageWatch {
    /// A watcher for an answer of this content type.
    #[must_use]
    pub fn new(content_type: &str) -> Self {
        Self {
            sse: content_type.starts_with("text/event-stream"),
            buffer: Vec::new(),
            usage: None,
        }
    }

    /// Feeds the next chunk of the answer.
    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.sse {
            if self.buffer.len() + chunk.len() <= MAX_JSON_BYTES {
                self.buffer.extend_from_slice(chunk);
            }
            return;
        }
        self.buffer.extend_from_slice(chunk);
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            self.sse_line(&line);
        }
        // A line longer than any sane event is dropped, not buffered forever.
        if self.buffer.len() > MAX_JSON_BYTES {
            self.buffer.clear();
        }
    }

    fn sse_line(&mut self, line: &[u8]) {
        let Ok(text) = std::str::from_utf8(line) else {
            return;
        };
        let Some(data) = text.trim_end().strip_prefix("data:") else {
            return;
        };
        let Ok(event) = serde_json::from_str::<Value>(data.trim_start()) else {
            return;
        };
        // Anthropic: message_start carries the prompt usage; OpenAI Chat:
        // the last chunk carries `usage` when `stream_options.include_usage`
        // is set; OpenAI Responses: the last event (`response.completed`,
        // or `response.incomplete` when the output bound cut it short)
        // carries the response with its usage.
        let usage = event
            .pointer("/message/usage")
            .filter(|_| event["type"] == "message_start")
            .or_else(|| {
                event.pointer("/response/usage").filter(|_| {
                    event["type"] == "response.completed" || event["type"] == "response.incomplete"
                })
            })
            .or_else(|| {
                event
                    .get("usage")
                    .filter(|u| u.get("prompt_tokens").is_some())
            })
            // Gemini: every chunk carries the usage so far; the last wins.
            .or_else(|| event.get("usageMetadata"));
        if let Some(usage) = usage.and_then(parse_usage) {
            self.usage = Some(usage);
        }
    }

    /// The answer ended: the usage it reported, if any.
    #[must_use]
    pub fn finish(&mut self) -> Option<Usage> {
        if !self.sse && !self.buffer.is_empty() {
            let body: Value = serde_json::from_slice(&self.buffer).unwrap_or(Value::Null);
            // Gemini's stream without `alt=sse` is one JSON array of
            // chunks: the last carries the usage.
            let body = match body {
                Value::Array(mut chunks) => chunks.pop().unwrap_or(Value::Null),
                other => other,
            };
            self.usage = body
                .get("usage")
                .or_else(|| body.get("usageMetadata"))
                .and_then(parse_usage);
            self.buffer.clear();
        }
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_stream_usage_comes_from_message_start_even_split_across_chunks() {
        let mut watch = UsageWatch::new("text/event-stream; charset=utf-8");
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"cache_read_input_tokens\":900,\"cache_creation_input_tokens\":0,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":12}}\n\n";
        for chunk in stream.as_bytes().chunks(7) {
            watch.feed(chunk);
        }
        // (the output counted at message_start; the turn's prompt is what matters)
        assert_eq!(
            watch.finish(),
            Some(Usage::anthropic(3, 900, 0).with_output(1))
        );
    }

    #[test]
    fn openai_stream_usage_comes_from_the_final_chunk() {
        let mut watch = UsageWatch::new("text/event-stream");
        watch.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n");
        watch.feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2000,\"completion_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":1024}}}\n\ndata: [DONE]\n\n");
        assert_eq!(
            watch.finish(),
            Some(Usage::openai(2000, 1024).with_output(5))
        );
    }

    #[test]
    fn openai_responses_stream_usage_comes_from_response_completed() {
        let mut watch = UsageWatch::new("text/event-stream");
        watch.feed(b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n");
        watch.feed(b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n");
        watch.feed(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":2000,\"input_tokens_details\":{\"cached_tokens\":1536},\"output_tokens\":7}}}\n\n");
        assert_eq!(
            watch.finish(),
            Some(Usage::openai(2000, 1536).with_output(7))
        );
    }

    #[test]
    fn a_json_answer_is_read_at_the_end() {
        let mut watch = UsageWatch::new("application/json");
        let body = br#"{"id":"x","usage":{"input_tokens":10,"cache_read_input_tokens":0,"cache_creation_input_tokens":500,"output_tokens":3}}"#;
        let (a, b) = body.split_at(20);
        watch.feed(a);
        watch.feed(b);
        assert_eq!(
            watch.finish(),
            Some(Usage::anthropic(10, 0, 500).with_output(3))
        );
        assert_eq!(UsageWatch::new("application/json").finish(), None);
    }

    #[test]
    fn gemini_usage_comes_from_the_last_chunk_streamed_either_way() {
        let chunk = |cached: u64| {
            format!(
                r#"{{"candidates":[],"usageMetadata":{{"promptTokenCount":3000,"cachedContentTokenCount":{cached},"candidatesTokenCount":2,"totalTokenCount":3002}}}}"#
            )
        };
        let mut sse = UsageWatch::new("text/event-stream");
        sse.feed(format!("data: {}\r\n\r\ndata: {}\r\n\r\n", chunk(0), chunk(2048)).as_bytes());
        assert_eq!(sse.finish(), Some(Usage::openai(3000, 2048).with_output(2)));
        let mut array = UsageWatch::new("application/json");
        array.feed(format!("[{},\n{}]", chunk(0), chunk(2048)).as_bytes());
        assert_eq!(
            array.finish(),
            Some(Usage::openai(3000, 2048).with_output(2))
        );
    }
}
