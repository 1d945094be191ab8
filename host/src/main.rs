//! `caq`: the command-line tool. A thin layer over the library crates: it parses arguments, calls
//! caq-model / caq-spec, prints tables and writes JSON. Errors are reported with their full cause
//! chain and a non-zero exit.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("caq: error: {e}");
            // A library error often carries its cause in its own message too (`path: os error`);
            // print each cause once.
            let mut shown = e.to_string();
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                    shown.push_str(&text);
                }
            }
            ExitCode::FAILURE
        }
    }
}
