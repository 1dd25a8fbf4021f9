//! The README starts with the two commands, shows Entra ID right after
//! the usage, and CI runs the same test command as the README gives.

const README: &str = include_str!("../../README.md");
const CI: &str = include_str!("../../.ci/run");

fn first_code_block() -> &'static str {
    let start = README.find("```sh\n").expect("a sh block") + 6;
    let len = README[start..].find("```").expect("closed block");
    &README[start..start + len]
}

fn command(line: &str) -> &str {
    line.split('#').next().unwrap_or("").trim()
}

#[test]
fn readme_starts_with_the_quickstart_and_test_commands() {
    let lines: Vec<&str> = first_code_block().lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        command(lines[0]),
        r"printf '4\n25\n100\n' | cargo run --example quickstart"
    );
    assert!(command(lines[1]).starts_with("cargo test"));
}

#[test]
fn ci_runs_the_readme_test_command() {
    let test_command = command(first_code_block().lines().nth(1).unwrap());
    assert!(
        CI.lines().any(|l| l.trim_start().starts_with(test_command)),
        "`.ci/run` must run `{test_command}`"
    );
}

#[test]
fn readme_shows_entra_id_right_after_the_usage() {
    let headings: Vec<&str> = README.lines().filter(|l| l.starts_with("## ")).collect();
    let usage = headings
        .iter()
        .position(|h| *h == "## Usage")
        .expect("a usage section");
    assert_eq!(
        headings.get(usage + 1).copied(),
        Some("## Entra ID with a managed identity"),
        "{headings:?}"
    );
}
