//! The documentation against the repository: README.md stays within 12 KB and links every page
//! of docs/; every relative link in README.md and docs/*.md reaches an existing file (and, for
//! a `#fragment` into a Markdown file, one of its headings); docs/configuration.md names
//! exactly the members of schema/plugin-config.schema.json. Native: no Envoy, no wasm build.
//!
//! Convention of docs/configuration.md: a member is a table row whose first cell is its JSON
//! path in backticks, `[]` standing for each element of an array (`backends[].id`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

const README_BUDGET_BYTES: u64 = 12 * 1024;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file in docs/.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![repo_root().join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo_root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "no Markdown files in docs/");
    files.extend(pages);
    files
}

/// The text outside fenced code blocks (links inside them are examples, not links).
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The targets of inline links, `[text](target)`, in `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        let target = rest[..end].trim();
        // `[title](url "title")`: the url only.
        let target = target.split_whitespace().next().unwrap_or("");
        targets.push(target.to_string());
        rest = &rest[end..];
    }
    targets
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces turned into `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    prose(markdown)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn readme_is_at_most_12_kb() {
    let size = std::fs::metadata(repo_root().join("README.md")).unwrap().len();
    assert!(size <= README_BUDGET_BYTES, "README.md is {size} bytes, over {README_BUDGET_BYTES}");
}

#[test]
fn every_relative_link_resolves() {
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap();
        for target in link_targets(&prose(&text)) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() { file.clone() } else { dir.join(path) };
            checked += 1;
            if !resolved.exists() {
                broken.push(format!("{}: {target} (no such file)", file.display()));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            if resolved.extension().is_some_and(|e| e == "md") {
                let headings = anchors(&std::fs::read_to_string(&resolved).unwrap());
                if !headings.contains(fragment) {
                    broken.push(format!("{}: {target} (no such heading)", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 20, "only {checked} relative links found: is the link parser broken?");
}

#[test]
fn readme_links_every_docs_page() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let linked: BTreeSet<String> = link_targets(&prose(&readme))
        .into_iter()
        .map(|t| t.split('#').next().unwrap_or("").to_string())
        .collect();
    for page in doc_files().iter().skip(1) {
        let name = format!("docs/{}", page.file_name().unwrap().to_string_lossy());
        assert!(linked.contains(&name), "README.md does not link {name}");
    }
}

/// Every member path of the schema node `node`, below `at`, into `out`. `$ref`s are followed;
/// `anyOf` / `oneOf` alternatives may define members; an `if` / `then` / `else` only tests
/// members defined in `properties` (every object is closed, so no member lives elsewhere).
fn schema_members(schema: &Value, node: &Value, at: &str, out: &mut BTreeSet<String>) {
    let node = match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.strip_prefix("#/$defs/").unwrap();
            &schema["$defs"][name]
        }
        None => node,
    };
    for key in ["anyOf", "oneOf"] {
        for alternative in node.get(key).and_then(Value::as_array).into_iter().flatten() {
            schema_members(schema, alternative, at, out);
        }
    }
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, member) in properties {
            let path = if at.is_empty() { name.clone() } else { format!("{at}.{name}") };
            out.insert(path.clone());
            schema_members(schema, member, &path, out);
        }
    }
    if let Some(items) = node.get("items") {
        schema_members(schema, items, &format!("{at}[]"), out);
    }
}

/// The members docs/configuration.md names: the backticked first cell of each table row.
fn documented_members(markdown: &str) -> Vec<String> {
    prose(markdown)
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |"))
        .map(|(member, _)| member.to_string())
        .collect()
}

#[test]
fn configuration_page_names_exactly_the_schema_members() {
    let text =
        std::fs::read_to_string(repo_root().join("schema/plugin-config.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let mut in_schema = BTreeSet::new();
    schema_members(&schema, &schema, "", &mut in_schema);
    assert!(in_schema.contains("sticky.secrets"), "the schema walk found {in_schema:?}");
    assert!(in_schema.contains("backends[].id"), "the schema walk found {in_schema:?}");

    let page = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    let listed = documented_members(&page);
    let mut documented = BTreeSet::new();
    let twice: Vec<&String> = listed.iter().filter(|m| !documented.insert(m.to_string())).collect();
    assert!(twice.is_empty(), "docs/configuration.md lists these members twice: {twice:?}");

    let undocumented: Vec<&String> = in_schema.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&in_schema).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "schema members missing from docs/configuration.md: {undocumented:?}\n\
         members in docs/configuration.md that the schema lacks: {unknown:?}"
    );
}

#[test]
fn the_link_and_member_parsers_read_what_they_claim() {
    let sample = "See [a](docs/a.md#x) and [b](https://e.org).\n```\n[c](in-code.md)\n```\n\
                  | `x.y[].z` | t |\n| not `a member` | t |\n";
    assert_eq!(link_targets(&prose(sample)), ["docs/a.md#x", "https://e.org"]);
    assert_eq!(documented_members(sample), ["x.y[].z"]);
    assert_eq!(
        anchor(" Health checks, ejection: `slow_start`"),
        "health-checks-ejection-slow_start"
    );
}
