//! The `ssdann` command: [`ssdann_tools::run`] with this process's arguments.

fn main() -> std::process::ExitCode {
    // A closed stdout (`ssdann info DIR | head`) ends the process quietly, as for any Unix
    // tool, instead of a panic from println!: Rust starts with SIGPIPE ignored.
    // SAFETY: restoring a signal's default disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    ssdann_tools::init_logging();
    std::process::ExitCode::from(ssdann_tools::run(std::env::args_os()))
}
