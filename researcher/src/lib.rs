//! The fedreq researcher API and the `fedreq` command-line program.

#![forbid(unsafe_code)]
