//! Every example register and every register snippet in docs/register.md compiles.

use remit_core::register::{Severity, Strictness, compile};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

fn errors(source: &str, path: &Path) -> Vec<String> {
    let env = |_: &str| Some("an-example-token-long-enough".to_owned());
    let (_, diags) = compile(source, path, &env, Strictness::Check);
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.render(&path.display().to_string()))
        .collect()
}

#[test]
fn every_example_register_checks() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let source = std::fs::read_to_string(&path).unwrap();
            assert_eq!(errors(&source, &path), Vec::<String>::new());
            n += 1;
        }
    }
    assert!(n > 0);
}

#[test]
fn every_register_snippet_in_the_docs_compiles() {
    let path = root().join("docs/register.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut n = 0;
    for block in text.split("```toml").skip(1) {
        let snippet = block.split("```").next().unwrap();
        if snippet.contains("# not a whole register") {
            continue;
        }
        assert_eq!(errors(snippet, &path), Vec::<String>::new(), "{snippet}");
        n += 1;
    }
    assert!(n >= 3, "docs/register.md lost its examples");
}
