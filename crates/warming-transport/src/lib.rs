//! HTTP and WebSocket transport for warming (in progress).
