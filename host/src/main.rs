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
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
