//! What runs the gateway's I/O beneath the dialects.

pub mod http;
