//! The deploy files and the worker agree: every metric the alert rules, their tests, the dashboard
//! and the operations guide use is one the worker exports, and every environment variable the task
//! definitions set is one the worker reads.

use imgfleet_shared::config::ENV_VARS;
use imgfleet_worker::ops::metrics::Metrics;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![repo().join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if exts.iter().any(|x| p.extension().is_some_and(|e| e == *x)) {
                out.push(p);
            }
        }
    }
    out
}

/// Tokens that start with `prefix` and continue with `[A-Za-z0-9_]`.
fn tokens<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let boundary = i == 0 || !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[i..];
        let len = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        // A bare prefix (as in `IMGFLEET_*` in prose) names no variable or metric.
        if boundary && !tail[..len].ends_with('_') {
            out.push(&tail[..len]);
        }
        rest = &tail[len..];
    }
    out
}

#[test]
fn every_metric_used_in_deploy_exists() {
    let names = Metrics::new().names();
    let mut checked = 0;
    let mut paths = files("deploy", &["yml", "yaml", "json"]);
    paths.push(repo().join("docs/operations.md"));
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        for token in tokens(&text, "imgfleet_") {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| token.strip_suffix(s).filter(|b| names.iter().any(|n| n == b)))
                .unwrap_or(token);
            // Identifiers that are not metrics: crate names in prose, the events stream name.
            if ["imgfleet_worker", "imgfleet_shared", "imgfleet_tests"].contains(&token) {
                continue;
            }
            assert!(
                names.iter().any(|n| n == base),
                "{} uses {token}, which the worker does not export ({names:?})",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} metric references found: are the deploy files there?");
}

#[test]
fn every_env_var_in_the_task_definitions_is_read_by_the_worker() {
    let ecs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/ecs/task-definition.json")).unwrap())
            .unwrap();
    let ecs_names: Vec<String> = ecs["containerDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["environment"].as_array().cloned().unwrap_or_default())
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(ecs_names.iter().any(|n| n == "IMGFLEET_QUEUE_URL"));
    let cfn = std::fs::read_to_string(repo().join("deploy/cloudformation/imgfleet.yaml")).unwrap();
    let mut all: Vec<String> = tokens(&cfn, "IMGFLEET_").into_iter().map(str::to_owned).collect();
    all.extend(ecs_names);
    all.extend(files("deploy", &["json", "yaml", "yml"]).iter().flat_map(|p| {
        tokens(&std::fs::read_to_string(p).unwrap(), "IMGFLEET_").into_iter().map(str::to_owned).collect::<Vec<_>>()
    }));
    for name in &all {
        assert!(ENV_VARS.contains(&name.as_str()), "deploy sets {name}, which the worker does not read");
    }
}

#[test]
fn every_env_var_the_worker_reads_is_documented() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for var in ENV_VARS {
        assert!(readme.contains(var), "README.md does not document {var}");
    }
}
