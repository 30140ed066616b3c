//! A real Prometheus server (Debian's `prometheus` package; `scripts/services.sh start` installs it)
//! scrapes a live worker every second and evaluates the project's rules, while the worker gets a
//! short load against moto server and Redis: good uploads in two waves, one upload during an S3
//! outage, and a poison message that ends in the dead-letter queue. Then, through Prometheus' HTTP
//! API: the scrape target is up; every query of every panel in deploy/grafana/ evaluates, and has
//! data unless it is listed in [`EXPECTED_EMPTY`] for a reason that is checked; every rule is
//! healthy and every metric selector in it matches live series; the alerts this load causes fire
//! and the others stay quiet. So metric names, label names, histogram buckets and rate windows are
//! checked against real data, not only their syntax.

use imgfleet_shared::event::EventType;
use imgfleet_tests::proxy::{Fault, FaultProxy, Service};
use imgfleet_tests::*;
use imgfleet_worker::fleet::service::{RunningWorker, consumer_settings};
use imgfleet_worker::ops::metrics::Metrics;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(60);
/// Deliveries of the poison message before the redrive policy moves it to the dead-letter queue.
const MAX_RECEIVES: u32 = 3;
/// Scrape and rule evaluation interval of the test's Prometheus, in seconds.
const SCRAPE_SECS: u64 = 1;
/// What every `for:` of the rules becomes in the test's copy.
const SHORT_FOR: &str = "2s";
const POISON: &str = "this is not a message imgfleet understands";

/// What the load must do to each alert in deploy/prometheus/*.yml. Every alert is listed (checked),
/// so a new alert needs a decision here.
const ALERTS: &[(&str, Expect)] = &[
    // The poison message reaches the dead-letter queue; the worker samples its depth.
    ("ImgfleetDeadLetterQueueNotEmpty", Expect::Fires),
    ("ImgfleetPoisonMessages", Expect::Fires),
    // Each delivery of the poison message counts as a failed job: 3 of about 10 finished jobs.
    ("ImgfleetFailureRatioHigh", Expect::Fires),
    ("ImgfleetInternalErrors", Expect::Quiet),
    // The S3 outage answers 503 SlowDown: transient (kind `storage`), not a configuration error.
    ("ImgfleetStorageConfigErrors", Expect::Quiet),
    ("ImgfleetNoReadyWorkers", Expect::Quiet),
    ("ImgfleetWorkerNotReady", Expect::Quiet),
    ("ImgfleetRedisPublishErrors", Expect::Quiet),
    ("ImgfleetNoCompletionsWithBacklog", Expect::Quiet),
    ("ImgfleetJobDurationP95High", Expect::Quiet),
    // It compares with 15 minutes ago, before this Prometheus existed: no sample to compare with.
    ("ImgfleetDeadLetterQueueGrowing", Expect::Quiet),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Reaches `firing` (its `for:` shortened to [`SHORT_FOR`]).
    Fires,
    /// Never pending nor firing while the load runs.
    Quiet,
}

/// Panel queries (panel title, refId) that stay empty under this load. Each reads only metric
/// families listed in [`UNFED`]; that they are unfed is checked, so the list cannot hide a
/// misspelt metric or label. Every other panel query must have data.
const EXPECTED_EMPTY: &[(&str, &str)] = &[
    // `redis {{operation}}`: Redis errors; Redis answers every call of this load.
    ("Errors by service / operation", "B"),
];

/// Metric families this load leaves without a series: they count trouble it does not cause.
const UNFED: &[Unfed] = &[Unfed {
    family: "imgfleet_redis_errors_total",
    why: "Redis answers every call of this load (an outage would fire ImgfleetRedisPublishErrors, which \
          must stay quiet here; tests/tests/faults.rs covers Redis outages)",
    trouble: redis_publish_fails,
}];

/// A metric family the load does not feed.
#[derive(Debug)]
struct Unfed {
    family: &'static str,
    why: &'static str,
    /// Records that family's trouble once, as the worker does.
    trouble: fn(&Metrics),
}

fn redis_publish_fails(metrics: &Metrics) {
    metrics.redis_errors.with_label_values(&["publish"]).inc();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_rules_work_against_a_live_worker() {
    let binary = prometheus_binary();
    let env = Env::new().await;
    let setup = env.setup("prom", MAX_RECEIVES, 30).await;
    let proxy = FaultProxy::start(&env.endpoint).await;
    let worker = start_idle_worker(&env, &setup, &proxy).await;
    let prom = Prometheus::start(&binary, &setup.name, worker.metrics_addr).await;
    prom.wait_target_up(worker.metrics_addr).await;
    let load_start = prom.wait_quiet_baseline().await;

    drive_load(&env, &setup, &proxy, &worker, &prom).await;
    prom.wait_evaluated_after(now()).await;
    let live = http_get(worker.metrics_addr, "/metrics").await.1;
    let mut failures = check_rules(&prom, &live).await;
    failures.extend(check_dashboards(&prom, &live).await);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    check_alerts(&prom, load_start, env.queue_counts(&setup.dlq_url).await.0).await;

    worker.shutdown();
    worker.wait().await;
}

// ------------------------------------------------------------------------------------ the load

/// A worker whose S3 and SQS calls go through `proxy` (retries paced from 1 s, queue depths sampled
/// every second), once it has acknowledged the bucket's s3:TestEvent, is ready, and samples an
/// empty queue: nothing of the set-up is left for Prometheus to see.
async fn start_idle_worker(env: &Env, setup: &Setup, proxy: &FaultProxy) -> RunningWorker {
    let config = env.config(setup);
    let mut settings = consumer_settings(&config, Duration::from_secs(1));
    settings.depth_interval = Duration::from_secs(1);
    let worker = start_worker_with(&config, &sdk_config(&proxy.url()).await, settings).await;
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    let idle = || async {
        let text = http_get(worker.metrics_addr, "/metrics").await.1;
        metric(&text, "imgfleet_ready") == 1.0 && metric(&text, "imgfleet_queue_messages_visible") == 0.0
    };
    eventually(WAIT, "the worker was not ready with an empty queue", idle).await;
    worker
}

/// The load: a poison message (delivered [`MAX_RECEIVES`] times, then moved to the dead-letter
/// queue); two waves of good uploads, the second sent once Prometheus has scraped the first, so
/// rates and histogram quantiles have an increase to show; and one upload while S3 answers 503
/// (retried, then completed), which feeds the AWS errors panel. Returns once Prometheus holds
/// every completion and the dead-letter queue's depth.
async fn drive_load(env: &Env, setup: &Setup, proxy: &FaultProxy, worker: &RunningWorker, prom: &Prometheus) {
    env.send(&setup.queue_url, POISON).await;
    let mut completed = 0;
    for wave in 0..2 {
        let keys: Vec<String> = (0..3).map(|i| format!("uploads/wave{wave}/{i}.jpg")).collect();
        for key in &keys {
            env.upload(&setup.bucket, key, photo(480, 360)).await;
        }
        wait_completed(env, setup, &keys).await;
        completed += keys.len();
        prom.wait_at_least(r#"sum(imgfleet_jobs_total{outcome="completed"})"#, completed as f64).await;
    }
    upload_during_s3_outage(env, setup, proxy, worker).await;
    prom.wait_at_least(r#"sum(imgfleet_jobs_total{outcome="completed"})"#, completed as f64 + 1.0).await;
    eventually(WAIT, "the poison message never reached the DLQ", || async {
        env.queue_counts(&setup.dlq_url).await.0 >= 1
    })
    .await;
    prom.wait_at_least("max(imgfleet_dlq_messages_visible)", 1.0).await;
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
}

/// One upload while every S3 call fails with 503: the job is retried (S3 back by then) and
/// completes; the failed GetObject is counted in `imgfleet_aws_errors_total`.
async fn upload_during_s3_outage(env: &Env, setup: &Setup, proxy: &FaultProxy, worker: &RunningWorker) {
    proxy.set(Service::S3, Fault::Error(503));
    let key = "uploads/s3-outage.jpg".to_owned();
    env.upload(&setup.bucket, &key, photo(480, 360)).await;
    let counted = r#"imgfleet_aws_errors_total{operation="GetObject",service="s3"}"#;
    eventually(WAIT, "the failing GetObject was not counted", || async {
        http_get(worker.metrics_addr, "/metrics").await.1.lines().any(|l| l.starts_with(counted))
    })
    .await;
    proxy.set(Service::S3, Fault::Pass);
    wait_completed(env, setup, &[key]).await;
}

async fn wait_completed(env: &Env, setup: &Setup, keys: &[String]) {
    env.wait_events(&setup.stream, WAIT, |events| {
        keys.iter().all(|k| events.iter().any(|e| &e.source.key == k && e.kind == EventType::Completed))
    })
    .await;
}

// ------------------------------------------------------------------------------------ alerts

/// The alerts this load causes fire, the DLQ one with the dead-letter queue's real depth
/// (`dlq_depth`, read from SQS) as its value; the others were never pending nor firing since the
/// load began (their `ALERTS` series has no sample since then) and are inactive now; and [`ALERTS`]
/// covers exactly the alerts of the rule files.
async fn check_alerts(prom: &Prometheus, load_start: f64, dlq_depth: i64) {
    let names: BTreeSet<String> = test_rules().iter().flat_map(|r| rule_names(&r.text, "alert")).collect();
    let listed: BTreeSet<String> = ALERTS.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(listed, names, "ALERTS must list every alert of deploy/prometheus/*.yml");
    for (name, _) in ALERTS.iter().filter(|(_, e)| *e == Expect::Fires) {
        eventually(WAIT, &format!("{name} never fired"), || async { prom.alert_state(name).await == "firing" }).await;
    }
    let dlq = prom.alerts().await.into_iter().find(|a| a["labels"]["alertname"] == "ImgfleetDeadLetterQueueNotEmpty");
    let value = dlq.as_ref().and_then(|a| a["value"].as_str()).and_then(|v| v.parse::<f64>().ok());
    assert_eq!(value, Some(dlq_depth as f64), "the DLQ alert's value is the DLQ's depth: {dlq:?}");
    let window = (now() - load_start).ceil() as u64;
    for (name, _) in ALERTS.iter().filter(|(_, e)| *e == Expect::Quiet) {
        let history = prom.query(&format!(r#"max_over_time(ALERTS{{alertname="{name}"}}[{window}s])"#)).await;
        assert_eq!(history, Ok(vec![]), "{name} was pending or firing under a load that causes no such trouble");
        assert_eq!(prom.alert_state(name).await, "inactive", "{name}");
    }
}

// ------------------------------------------------------------------------------------ rules

/// Every rule of the rule files is loaded and was evaluated without error; every recording rule
/// yields a value; every metric selector of every rule matches live series (or reads an [`UNFED`]
/// family, checked), and every label a rule groups by exists on them. Returns what does not hold.
async fn check_rules(prom: &Prometheus, live: &str) -> Vec<String> {
    let files = test_rules();
    let expected: BTreeSet<String> =
        files.iter().flat_map(|r| [rule_names(&r.text, "alert"), rule_names(&r.text, "record")].concat()).collect();
    let rules = prom.rules().await;
    let loaded: BTreeSet<String> = rules.iter().map(|r| r["name"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(loaded, expected, "Prometheus loaded other rules than the rule files hold");
    let mut failures = Vec::new();
    for rule in &rules {
        let (name, query) = (rule["name"].as_str().unwrap_or_default(), rule["query"].as_str().unwrap_or_default());
        if rule["health"] != "ok" {
            failures.push(format!("{name}: health {} ({})", rule["health"], rule["lastError"]));
        }
        if rule["type"] == "recording" && !has_data(&prom.query(name).await.unwrap_or_default()) {
            failures.push(format!("recording rule {name} yields no value"));
        }
        failures.extend(check_selectors(prom, live, name, query).await);
    }
    eprintln!("rules: {} loaded, {} failures", rules.len(), failures.len());
    failures
}

/// Every metric selector of `query` matches live series (one on an [`UNFED`] family matches none,
/// for its checked reason), and the labels `query` groups by are on them: a rule on a misspelt
/// metric or label, or on a metric the worker does not export, fails here even if it never fires.
async fn check_selectors(prom: &Prometheus, live: &str, rule: &str, query: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let mut labels = BTreeSet::from(["instance".to_owned(), "job".to_owned()]);
    for selector in selectors(query) {
        let family = selector.split('{').next().unwrap_or_default();
        let found = match prom.query(&selector).await {
            Ok(found) => found,
            Err(e) => {
                failures.push(format!("{rule}: {selector}: {e}"));
                continue;
            }
        };
        if let Some(unfed) = UNFED.iter().find(|u| u.family == family) {
            match unfed_reason_holds(unfed, live, &[]) {
                Ok(()) if found.is_empty() => labels.extend(trouble_labels(unfed)),
                Ok(()) => failures.push(format!("{rule}: {selector} has series, but {family} is listed as unfed")),
                Err(e) => failures.push(format!("{rule}: {e}")),
            }
        } else if found.is_empty() {
            failures.push(format!("{rule}: {selector} matches no series"));
        }
        labels.extend(found.iter().flat_map(|s| s.labels.keys().cloned()));
    }
    for label in grouping_labels(query) {
        if !labels.contains(&label) {
            failures.push(format!("{rule}: groups by `{label}`, a label none of its series has"));
        }
    }
    failures
}

// ------------------------------------------------------------------------------------ dashboards

/// Every query of every panel (nested rows included) of every dashboard in deploy/grafana/, with
/// the dashboard's variables set as Grafana sets them (each query variable to what its own
/// `label_values` query returns) and Grafana's built-ins for a 1 s step over the test's time, is
/// run as Grafana runs it (a range query, or an instant one when the target asks): it evaluates,
/// has data (a finite value) unless listed in [`EXPECTED_EMPTY`], and its series carry the labels
/// its legend and `by (...)` name. Returns what does not hold.
async fn check_dashboards(prom: &Prometheus, live: &str) -> Vec<String> {
    let (start, end) = (prom.started, now());
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    let mut count = 0;
    for path in files_in("deploy/grafana", "json") {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
        let mut vars = template_values(prom, &dashboard, start, end).await;
        vars.extend(builtins(end - start));
        for q in panel_queries(&dashboard) {
            count += 1;
            let id = format!("{}: panel {:?} {}", path.display(), q.panel, q.ref_id);
            let expected_empty = EXPECTED_EMPTY.contains(&(q.panel.as_str(), q.ref_id.as_str()));
            if expected_empty {
                seen.insert((q.panel.clone(), q.ref_id.clone()));
            }
            let expr = match substitute(&q.expr, &vars) {
                Ok(e) => e,
                Err(e) => {
                    failures.push(format!("{id}: {e} in {}", q.expr));
                    continue;
                }
            };
            let answer = if q.instant { prom.query(&expr).await } else { prom.query_range(&expr, start, end).await };
            match answer {
                Err(e) => failures.push(format!("{id}: {e}\n    {expr}")),
                Ok(series) if expected_empty => failures.extend(check_expected_empty(&q, &series, live, &id)),
                Ok(series) if !has_data(&series) => failures.push(format!("{id}: no data\n    {expr}")),
                Ok(series) => failures.extend(missing_labels(&q, &series).map(|l| format!("{id}: no label `{l}`"))),
            }
        }
    }
    for (panel, ref_id) in EXPECTED_EMPTY {
        if !seen.contains(&((*panel).to_owned(), (*ref_id).to_owned())) {
            failures.push(format!("EXPECTED_EMPTY names panel {panel:?} {ref_id}, which no dashboard has"));
        }
    }
    assert!(count > 0, "no panel query found in deploy/grafana/");
    eprintln!(
        "dashboards: {count} panel queries evaluated, {} expected empty, {} failures",
        EXPECTED_EMPTY.len(),
        failures.len()
    );
    failures
}

/// A query expected empty is empty, reads only [`UNFED`] families, and each of them really is a
/// family the worker exports, with the labels the query uses, that this load did not feed.
fn check_expected_empty(q: &PanelQuery, series: &[Series], live: &str, id: &str) -> Vec<String> {
    let mut failures = Vec::new();
    if !series.is_empty() {
        failures.push(format!("{id}: has data now; remove it from EXPECTED_EMPTY"));
    }
    let mut labels = grouping_labels(&q.expr);
    labels.extend(legend_labels(&q.legend));
    labels.extend(selectors(&q.expr).iter().flat_map(|s| matcher_labels(s)));
    labels.retain(|l| l != "instance" && l != "job");
    for selector in selectors(&q.expr) {
        let family = selector.split('{').next().unwrap_or_default();
        match UNFED.iter().find(|u| u.family == family) {
            None => failures.push(format!("{id}: expected empty, but it reads {family}, which is not in UNFED")),
            Some(unfed) => {
                failures.extend(unfed_reason_holds(unfed, live, &labels).err().map(|e| format!("{id}: {e}")))
            }
        }
    }
    failures
}

/// Labels the query's legend or `by (...)` names that a returned series lacks.
fn missing_labels<'a>(q: &'a PanelQuery, series: &'a [Series]) -> impl Iterator<Item = String> + 'a {
    let mut wanted = legend_labels(&q.legend);
    wanted.extend(grouping_labels(&q.expr));
    wanted.sort();
    wanted.dedup();
    wanted.into_iter().filter(|l| series.iter().any(|s| !s.labels.contains_key(l)))
}

/// Why `unfed` has no series: the live worker exports none of it (its trouble did not happen),
/// while a fresh registry with that trouble recorded exports it, carrying every label in `labels`
/// (so the name and labels a query reads are real).
fn unfed_reason_holds(unfed: &Unfed, live: &str, labels: &[String]) -> Result<(), String> {
    let family = unfed.family;
    if live.lines().any(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} "))) {
        return Err(format!("{family} is listed as unfed ({}), but the worker exports it", unfed.why));
    }
    let have = trouble_labels(unfed);
    if have.is_empty() {
        return Err(format!("{family}: the worker does not export it even with its trouble recorded"));
    }
    match labels.iter().find(|l| !have.contains(*l)) {
        Some(l) => Err(format!("{family} has no label `{l}` (it has {have:?})")),
        None => Ok(()),
    }
}

/// The label names of `unfed`'s series in a fresh registry once its trouble is recorded.
fn trouble_labels(unfed: &Unfed) -> BTreeSet<String> {
    let metrics = Metrics::new();
    (unfed.trouble)(&metrics);
    let text = metrics.render();
    let line = text.lines().find(|l| l.starts_with(&format!("{}{{", unfed.family)));
    line.map(|l| matcher_labels(l.split_whitespace().next().unwrap_or_default()).into_iter().collect())
        .unwrap_or_default()
}

/// One query of one panel.
#[derive(Debug)]
struct PanelQuery {
    panel: String,
    ref_id: String,
    expr: String,
    legend: String,
    instant: bool,
}

/// Every target of every panel, nested ones (collapsed rows) and old-style `rows` included.
fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    fn walk(panels: &Value, out: &mut Vec<PanelQuery>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push(PanelQuery {
                    panel: panel["title"].as_str().unwrap_or_default().to_owned(),
                    ref_id: target["refId"].as_str().unwrap_or_default().to_owned(),
                    expr: target["expr"].as_str().unwrap_or_default().to_owned(),
                    legend: target["legendFormat"].as_str().unwrap_or_default().to_owned(),
                    instant: target["instant"] == true && target["range"] != true,
                });
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    for row in dashboard["rows"].as_array().into_iter().flatten() {
        walk(&row["panels"], &mut out);
    }
    out
}

/// The dashboard's variables as Grafana substitutes them when the scraped worker is picked: a
/// query variable (`label_values(selector, label)`) gets what Prometheus answers for it (which must
/// not be empty), regex-escaped as Grafana escapes values for `=~`; a datasource variable is not
/// used in queries.
async fn template_values(prom: &Prometheus, dashboard: &Value, start: f64, end: f64) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or_default().to_owned();
        match var["type"].as_str() {
            Some("datasource") => {}
            Some("query") => {
                let definition =
                    var["definition"].as_str().or(var["query"]["query"].as_str()).or(var["query"].as_str());
                let values = prom.label_values(definition.unwrap_or_default(), start, end).await;
                assert!(!values.is_empty(), "variable {name} ({definition:?}) has no value");
                let escaped: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
                let value = if escaped.len() == 1 { escaped[0].clone() } else { format!("({})", escaped.join("|")) };
                vars.insert(name, value);
            }
            other => panic!("variable {name}: type {other:?} is not one this test knows how to set"),
        }
    }
    vars
}

/// Grafana's built-in variables for a range of `range_secs` at a 1 s step, with the 1 s scrape
/// interval: `$__rate_interval` is max(interval + scrape, 4 × scrape).
fn builtins(range_secs: f64) -> BTreeMap<String, String> {
    let range = range_secs.ceil() as u64;
    let rate = (SCRAPE_SECS + SCRAPE_SECS).max(4 * SCRAPE_SECS);
    [
        ("__interval", format!("{SCRAPE_SECS}s")),
        ("__interval_ms", (SCRAPE_SECS * 1000).to_string()),
        ("__rate_interval", format!("{rate}s")),
        ("__range", format!("{range}s")),
        ("__range_s", range.to_string()),
        ("__range_ms", (range * 1000).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `expr` with `$name` and `${name}` replaced; an unknown variable is an error (Grafana would send
/// it as is, and the panel would show nothing).
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').ok_or("unclosed ${")?;
                (braced[..end].split(':').next().unwrap_or_default(), end + 2)
            }
            None => {
                let len = after.find(|c: char| !is_ident(c)).unwrap_or(after.len());
                (&after[..len], len)
            }
        };
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(vars.get(name).ok_or_else(|| format!("unknown variable ${name}"))?);
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A value escaped for a PromQL regex string, as Grafana escapes it (`.` becomes `\\.`).
fn regex_escape(value: &str) -> String {
    value.chars().fold(String::new(), |mut out, c| {
        if r"\.+*?^$()[]{}|'".contains(c) {
            out.push_str(r"\\");
        }
        out.push(c);
        out
    })
}

// ------------------------------------------------------------------------------------ PromQL text

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// PromQL words that are not metric names: aggregation operators and keywords.
const PROMQL_WORDS: &str = "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk \
                           limit_ratio offset bool and or unless atan2 inf nan";
/// Keywords followed by a label list.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric selectors of an expression, with their matchers: `name` or `name{a="b"}`. Function
/// names, operators, keywords, label lists, strings, ranges, numbers and template variables are
/// not selectors.
fn selectors(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let word_char = |c: char| is_ident(c) || c == ':';
    let mut out = Vec::new();
    let (mut i, mut label_list) = (0, false);
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && word_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().position(|c| !c.is_whitespace()).map(|n| i + n);
            if LABEL_LISTS.contains(&word.as_str()) {
                label_list = true;
            } else if !PROMQL_WORDS.split_whitespace().any(|w| w == word) && next.is_none_or(|n| chars[n] != '(') {
                let matchers = next.filter(|&n| chars[n] == '{').map(|n| (n, closing(&chars, n, '}')));
                out.push(match matchers {
                    Some((open, close)) => {
                        i = close + 1;
                        format!("{word}{}", chars[open..=close].iter().collect::<String>())
                    }
                    None => word,
                });
            }
            continue;
        }
        let close = match c {
            '[' => Some(']'),
            '{' => Some('}'),
            '"' | '\'' | '`' => Some(c),
            '(' if label_list => Some(')'),
            _ => None,
        };
        i = match (close, c) {
            (Some(close), _) => closing(&chars, i, close) + 1,
            (None, '$' | '0'..='9' | '.') => {
                i + 1 + chars[i + 1..].iter().take_while(|&&c| word_char(c) || c == '.').count()
            }
            (None, _) => i + 1,
        };
        label_list &= c.is_whitespace();
    }
    out
}

/// The index of the `close` that ends what opens at `open` (a string, or brackets with strings
/// inside), or the end of the text.
fn closing(chars: &[char], open: usize, close: char) -> usize {
    let in_string = matches!(chars[open], '"' | '\'' | '`');
    let mut i = open + 1;
    while i < chars.len() && chars[i] != close {
        i = match chars[i] {
            '\\' if in_string => i + 2,
            quote @ ('"' | '\'' | '`') if !in_string => closing(chars, i, quote) + 1,
            _ => i + 1,
        };
    }
    i.min(chars.len())
}

/// The label names of a selector's matchers (`{a="x", b=~"y"}` → a, b), or of a series as exported.
fn matcher_labels(selector: &str) -> Vec<String> {
    let Some(inner) = selector.split_once('{').and_then(|(_, m)| m.strip_suffix('}')) else { return vec![] };
    inner
        .split(',')
        .filter_map(|m| m.split(['=', '!', '~']).next())
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The labels an expression groups by (`by (a, b)`), without `le`, which histogram_quantile uses up.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("by") {
        let after = rest[i + 2..].trim_start();
        if !rest[..i].ends_with(is_ident)
            && let Some(list) = after.strip_prefix('(').and_then(|a| a.split_once(')')).map(|(l, _)| l)
        {
            out.extend(list.split(',').map(str::trim).filter(|l| !l.is_empty() && *l != "le").map(str::to_owned));
        }
        rest = &rest[i + 2..];
    }
    out
}

/// The `{{label}}` placeholders of a legend format.
fn legend_labels(legend: &str) -> Vec<String> {
    legend.split("{{").skip(1).filter_map(|p| p.split_once("}}")).map(|(l, _)| l.trim().to_owned()).collect()
}

// ------------------------------------------------------------------------------------ rule files

/// A rule file of deploy/prometheus/ and its test copy.
#[derive(Debug)]
struct RuleFile {
    name: String,
    text: String,
}

/// deploy/prometheus/*.yml (what `promtool check rules` reads), each with every `for:` shortened to
/// [`SHORT_FOR`] and every group `interval:` set to the scrape interval, so alerts resolve in
/// seconds. Made from the files themselves: there is no second copy to keep in step.
fn test_rules() -> Vec<RuleFile> {
    let files = files_in("deploy/prometheus", "yml");
    assert!(!files.is_empty(), "no rule file in deploy/prometheus/");
    files
        .iter()
        .map(|p| RuleFile {
            name: p.file_name().unwrap_or_default().to_string_lossy().into_owned(),
            text: shortened(&std::fs::read_to_string(p).expect("rule file")),
        })
        .collect()
}

/// `rules` with each `for: <duration>` line set to [`SHORT_FOR`] and each `interval: <duration>`
/// line to the scrape interval (a comment after the value goes too); nothing else changes.
fn shortened(rules: &str) -> String {
    let is_duration =
        |v: &str| v.starts_with(|c: char| c.is_ascii_digit()) && v.chars().all(|c| c.is_ascii_alphanumeric());
    let mut out: String = rules
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            let (key, value) = line.trim().split_once(": ").unwrap_or_default();
            match (key, value.split_whitespace().next().unwrap_or_default()) {
                ("for", v) if is_duration(v) => format!("{indent}for: {SHORT_FOR}"),
                ("interval", v) if is_duration(v) => format!("{indent}interval: {SCRAPE_SECS}s"),
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// The names of a rule file's rules of `kind` (`alert` or `record`).
fn rule_names(text: &str, kind: &str) -> Vec<String> {
    let key = format!("{kind}:");
    text.lines()
        .filter_map(|l| l.trim_start().trim_start_matches("- ").strip_prefix(&key))
        .map(|n| n.trim().trim_matches(['"', '\'']).to_owned())
        .collect()
}

/// The files of `dir` (relative to the repository) ending in `.ext`, sorted.
fn files_in(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

// ------------------------------------------------------------------------------------ Prometheus

/// The `prometheus` server binary; the test fails, not passes, without it.
fn prometheus_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("prometheus")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path.into_iter().chain([PathBuf::from("/usr/bin/prometheus")]).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "the prometheus server is not installed: run `scripts/services.sh start` (it installs Debian's \
             prometheus package) or scripts/test.sh"
        )
    })
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

/// A directory removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One series of a query answer: its labels and whether any of its values is a finite number.
#[derive(Debug, PartialEq)]
struct Series {
    labels: BTreeMap<String, String>,
    finite: bool,
}

fn has_data(series: &[Series]) -> bool {
    series.iter().any(|s| s.finite)
}

/// A Prometheus server of the test's own on a free loopback port, its TSDB in a temporary folder,
/// scraping one worker and evaluating the test copy of the rules every second. Killed when dropped
/// (the process first, then its folder).
#[derive(Debug)]
struct Prometheus {
    addr: SocketAddr,
    /// When it started, in seconds since the epoch: the start of the dashboards' time range.
    started: f64,
    process: ChildGuard,
    dir: TempDir,
}

impl Prometheus {
    async fn start(binary: &Path, name: &str, target: SocketAddr) -> Self {
        let dir = TempDir(std::env::temp_dir().join(format!("{name}-prometheus")));
        std::fs::create_dir_all(&dir.0).expect("temporary folder");
        let mut rule_files = String::new();
        for rules in test_rules() {
            let path = dir.0.join(&rules.name);
            std::fs::write(&path, &rules.text).expect("test rules");
            rule_files.push_str(&format!("  - {:?}\n", path.display().to_string()));
        }
        let config = dir.0.join("prometheus.yml");
        std::fs::write(&config, scrape_config(target, &rule_files)).expect("prometheus.yml");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.0.join("prometheus.log")).expect("log file");
        let process = ChildGuard::spawn(
            std::process::Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .stdout(std::process::Stdio::null())
                .stderr(log),
        );
        let mut prom = Self { addr, started: now(), process, dir };
        prom.wait_ready().await;
        prom
    }

    /// Waits for `/-/ready`; fails with Prometheus' log if it exits or never gets there.
    async fn wait_ready(&mut self) {
        let deadline = std::time::Instant::now() + WAIT;
        while !matches!(try_http_get(self.addr, "/-/ready").await, Ok((200, _))) {
            let log = || std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default();
            if let Some(status) = self.process.try_wait() {
                panic!("prometheus exited ({status}):\n{}", log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus not ready on {} after {WAIT:?}:\n{}",
                self.addr,
                log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `data` of an API answer, or Prometheus' error.
    async fn api(&self, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", url_encode(v))).collect();
        let (status, body) = http_get(self.addr, &format!("{path}?{}", query.join("&"))).await;
        let answer: Value = serde_json::from_str(&body).map_err(|e| format!("HTTP {status}: {e}: {body}"))?;
        match answer["status"].as_str() {
            Some("success") => Ok(answer["data"].clone()),
            _ => Err(format!("{}: {}", answer["errorType"], answer["error"])),
        }
    }

    /// An instant query now.
    async fn query(&self, expr: &str) -> Result<Vec<Series>, String> {
        self.api("/api/v1/query", &[("query", expr.to_owned())]).await.map(|d| series(&d))
    }

    /// A range query at a 1 s step, as a dashboard panel runs it.
    async fn query_range(&self, expr: &str, start: f64, end: f64) -> Result<Vec<Series>, String> {
        let params = [
            ("query", expr.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", SCRAPE_SECS.to_string()),
        ];
        self.api("/api/v1/query_range", &params).await.map(|d| series(&d))
    }

    /// What `label_values(selector, label)` (or `label_values(label)`) returns in Grafana.
    async fn label_values(&self, definition: &str, start: f64, end: f64) -> Vec<String> {
        let args = definition.trim().strip_prefix("label_values(").and_then(|a| a.strip_suffix(')'));
        let args = args.unwrap_or_else(|| panic!("variable query {definition:?} is not label_values(...)"));
        let (selector, label) = args.rsplit_once(',').map_or(("", args), |(s, l)| (s.trim(), l.trim()));
        let mut params = vec![("start", format!("{start:.3}")), ("end", format!("{end:.3}"))];
        if !selector.is_empty() {
            params.push(("match[]", selector.to_owned()));
        }
        let data = self.api(&format!("/api/v1/label/{label}/values"), &params).await.expect("label values");
        data.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    }

    /// Every rule of every group.
    async fn rules(&self) -> Vec<Value> {
        let data = self.api("/api/v1/rules", &[]).await.expect("rules");
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        groups.iter().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default()).collect()
    }

    /// The alerts pending or firing now.
    async fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts", &[]).await.expect("alerts")["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// `inactive`, `pending` or `firing`.
    async fn alert_state(&self, name: &str) -> String {
        let rules = self.rules().await;
        let rule = rules.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no rule {name}"));
        rule["state"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the worker is Prometheus' only target, scraped at its /metrics, and up.
    async fn wait_target_up(&self, worker: SocketAddr) {
        let scrape_url = format!("http://{worker}/metrics");
        eventually(WAIT, &format!("the scrape target {scrape_url} never came up"), || async {
            let targets = self.api("/api/v1/targets", &[]).await.expect("targets");
            let active = targets["activeTargets"].as_array().cloned().unwrap_or_default();
            active.len() == 1 && active[0]["scrapeUrl"] == scrape_url.as_str() && active[0]["health"] == "up"
        })
        .await;
    }

    /// Waits until Prometheus holds the idle worker's `imgfleet_ready` 1, every rule group was
    /// evaluated after that, and no alert is pending or firing: an idle healthy worker raises
    /// nothing. Returns when that held, the time from which the load is watched.
    async fn wait_quiet_baseline(&self) -> f64 {
        self.wait_at_least("imgfleet_ready", 1.0).await;
        self.wait_evaluated_after(now()).await;
        eventually(WAIT, "an alert is active for an idle, healthy worker", || async { self.alerts().await.is_empty() })
            .await;
        now()
    }

    /// Waits until the first series of `expr` is at least `value`.
    async fn wait_at_least(&self, expr: &str, value: f64) {
        eventually(WAIT, &format!("Prometheus never saw {expr} >= {value}"), || async {
            let first = self.api("/api/v1/query", &[("query", expr.to_owned())]).await.ok();
            let first = first.and_then(|d| d["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()));
            first.is_some_and(|v| v >= value)
        })
        .await;
    }

    /// Waits until every rule group has been evaluated after `time` (Prometheus' own metric).
    async fn wait_evaluated_after(&self, time: f64) {
        eventually(WAIT, "the rules were not evaluated again", || async {
            let text = http_get(self.addr, "/metrics").await.1;
            let last = text
                .lines()
                .filter(|l| l.starts_with("prometheus_rule_group_last_evaluation_timestamp_seconds{"))
                .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()));
            last.fold(None, |min: Option<f64>, t| Some(min.map_or(t, |m| m.min(t)))).is_some_and(|t| t > time)
        })
        .await;
    }
}

/// Scrape `target` and evaluate `rule_files` (YAML list items) every [`SCRAPE_SECS`].
fn scrape_config(target: SocketAddr, rule_files: &str) -> String {
    let every = format!("{SCRAPE_SECS}s");
    format!(
        "global:\n  scrape_interval: {every}\n  scrape_timeout: {every}\n  evaluation_interval: {every}\n\
         rule_files:\n{rule_files}\
         scrape_configs:\n  - job_name: imgfleet\n    static_configs:\n      - targets: [\"{target}\"]\n"
    )
}

/// The series of a query answer's `data` (vector, matrix or scalar).
fn series(data: &Value) -> Vec<Series> {
    let finite = |v: &Value| v[1].as_str().and_then(|s| s.parse::<f64>().ok()).is_some_and(f64::is_finite);
    match data["resultType"].as_str() {
        Some("scalar") => vec![Series { labels: BTreeMap::new(), finite: finite(&data["result"]) }],
        _ => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| Series {
                labels: serde_json::from_value(s["metric"].clone()).unwrap_or_default(),
                finite: finite(&s["value"]) || s["values"].as_array().into_iter().flatten().any(finite),
            })
            .collect(),
    }
}

/// Percent-encodes a query parameter.
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ------------------------------------------------------------------------------------ unit tests

#[test]
fn the_test_rules_differ_only_in_for_and_interval() {
    let rules = concat!(
        "groups:\n  - name: g\n    interval: 1m\n    rules:\n",
        "      - alert: A\n        expr: x > 0\n        for: 10m  # long\n",
        "        annotations:\n          description: >-\n            for: ever\n",
        "      - record: r:x\n        expr: sum(x)\n",
    );
    let short = shortened(rules);
    let changed: Vec<(&str, &str)> = rules.lines().zip(short.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(changed, [("    interval: 1m", "    interval: 1s"), ("        for: 10m  # long", "        for: 2s")]);
    assert_eq!((rule_names(&short, "alert"), rule_names(&short, "record")), (vec!["A".into()], vec!["r:x".into()]));
}

#[test]
fn panel_queries_are_read_as_grafana_fills_them_in() {
    let vars: BTreeMap<String, String> =
        [("instance".to_owned(), regex_escape("127.0.0.1:9090"))].into_iter().chain(builtins(60.0)).collect();
    let expr =
        r#"sum by (outcome, le) (rate(imgfleet_x_bucket{instance=~"$instance"}[$__rate_interval])) / ${__range_s}"#;
    assert_eq!(
        substitute(expr, &vars).unwrap(),
        r#"sum by (outcome, le) (rate(imgfleet_x_bucket{instance=~"127\\.0\\.0\\.1:9090"}[4s])) / 60"#
    );
    assert!(substitute("rate(x[$__rate_intervall])", &vars).is_err(), "an unknown variable is an error");
    assert_eq!(grouping_labels(expr), ["outcome"]);
    assert_eq!(selectors(expr), [r#"imgfleet_x_bucket{instance=~"$instance"}"#]);
    let rule =
        r#"max(min_over_time(queue[15m])) > 0 and on () (sum(increase(jobs{outcome="a}b"}[15m])) or vector(0)) == 0"#;
    assert_eq!(selectors(rule), ["queue", r#"jobs{outcome="a}b"}"#]);
    assert_eq!(
        selectors("max(dlq) > max(dlq offset 15m) or absent(aws_sqs_depth:max)"),
        ["dlq", "dlq", "aws_sqs_depth:max"]
    );
    assert_eq!(matcher_labels(r#"imgfleet_a{operation="GetObject",service="s3"}"#), ["operation", "service"]);
    assert_eq!(legend_labels("{{service}} {{ operation }}"), ["service", "operation"]);
}
