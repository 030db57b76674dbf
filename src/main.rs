//! The `virtio-migrate` binary: parse the command line, dispatch, map errors to exit codes.
fn main() {
    std::process::exit(virtio_migrate::cli::main());
}
