//! pam_aloha.
