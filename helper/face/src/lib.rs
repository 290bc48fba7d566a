//! Aloha face engine.
