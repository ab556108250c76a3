//! Tests across payloads: whole messages, golden bytes, truncation, SK and SKF.

mod cipher;
mod fragments;
mod golden;
mod messages;
mod sk;
