//! Aloha shared library.
