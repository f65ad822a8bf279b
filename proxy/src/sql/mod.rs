//! SQL text handling: lexing and statement classification.

pub mod classify;
pub mod label;
pub mod lex;
pub mod reads;
