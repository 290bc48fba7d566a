//! alohad library.
