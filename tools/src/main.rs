//! The `ssdann` command: [`ssdann_tools::run`] with this process's arguments.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(ssdann_tools::run(std::env::args_os()))
}
