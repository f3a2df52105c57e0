//! In-memory MQTT broker and deterministic simulator for fedreq.

#![forbid(unsafe_code)]
