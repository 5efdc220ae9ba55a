//! `sluice-loadgen`: see `loadgen/README.md`.

use std::process::ExitCode;

use clap::Parser;
use sluice_loadgen::{run, run_child, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(spec) = args.child.clone() {
        return match run_child(&args, &spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sluice-loadgen (child {spec}): {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
