//! Tests run in a child process: the test binary started again to run one
//! test only.
//!
//! The suite's tests share one process, so its global subscriber (settable
//! once) and its environment variables are everyone's. A test that needs
//! either runs in a process of its own with [`own_process`].
//!
//! A test fn can also be a *role*: a program that a test starts as a
//! process, e.g. to restart an application. [`command`] starts one with its
//! parameters in [`ARGS_VAR`]; the role's test fn reads them with
//! [`role_args`] and returns at once in an ordinary run of the suite, where
//! [`ROLE_VAR`] is not set.

use std::process::Command;

/// The role a child process runs; not set in an ordinary run.
pub const ROLE_VAR: &str = "TRACING_APPINSIGHTS_CHILD";

/// The role's parameters, one a line.
pub const ARGS_VAR: &str = "TRACING_APPINSIGHTS_CHILD_ARGS";

/// What a child run by [`own_process`] prints when the test's body returned.
const DONE: &str = "child process: the test's body returned";

/// The name the test harness gives the test fn `name` of the module whose
/// `module_path!()` is `module`: the path without the crate's name, e.g.
/// `offline_storage::offline_restart_child`.
pub fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
}

/// A command that runs only the test `test` (a [`test_name`]) of this
/// binary, its output not captured, as `role` with `args`.
pub fn command(test: &str, role: &str, args: &[String]) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .env(ARGS_VAR, args.join("\n"));
    command
}

/// The parameters given to this process if it is a child running `role`;
/// `None` in any other process.
pub fn role_args(role: &str) -> Option<Vec<String>> {
    if std::env::var_os(ROLE_VAR)? != role {
        return None;
    }
    let args = std::env::var(ARGS_VAR).unwrap_or_default();
    Some(args.lines().map(str::to_owned).collect())
}

/// Runs the test fn `name` of the module `module` (its `module_path!()`)
/// in a process of its own. In the parent this starts a child process that
/// runs that test alone, fails with the child's output if the child fails,
/// and returns `None`: the test returns. In the child it returns the
/// [`OwnProcess`] guard to hold while the test's body runs.
pub fn own_process(module: &str, name: &str) -> Option<OwnProcess> {
    let test = test_name(module, name);
    if role_args(&test).is_some() {
        return Some(OwnProcess);
    }
    let out = command(&test, &test, &[])
        .output()
        .expect("start the child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(DONE),
        "{test}, in its own process: {}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    None
}

/// Held by a test's body in its own process; on a normal return it tells
/// the parent that the body ran to its end.
pub struct OwnProcess;

impl Drop for OwnProcess {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            println!("{DONE}");
        }
    }
}
