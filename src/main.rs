//! The `ufm-pkeyd` binary: everything lives in the library; this only passes the arguments
//! and exits with the documented code.

fn main() {
    // rustls needs one crypto provider for the process; ring is the one compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let code = ufm_pkeyd::main_with_args(std::env::args_os().skip(1).collect());
    std::process::exit(code);
}
