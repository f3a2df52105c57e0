//! The fedreq researcher API and command-line program.

#![forbid(unsafe_code)]
