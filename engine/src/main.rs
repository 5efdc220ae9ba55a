//! The `sluice` binary. Its roles (`run`, `stratum`, `jobmanager`) arrive with the engine; for now it
//! reports its version so that packaging and the CI can call it.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        None | Some("--version") | Some("version") => {
            println!("sluice {}", env!("CARGO_PKG_VERSION"));
        }
        Some(other) => {
            eprintln!("sluice: unknown command {other:?}; the engine roles are not built yet (try `sluice --version`)");
            std::process::exit(2);
        }
    }
}
