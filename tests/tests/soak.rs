//! A soak: 1,000 uploads through two worker processes, one of them killed with SIGKILL and started
//! again in the middle. Nothing lost, nothing stuck in flight, and the dead-letter queue holds
//! exactly the poison messages. `IMGFLEET_SOAK_UPLOADS` changes the count.

use imgfleet_shared::event::EventType;
use imgfleet_tests::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

fn start_worker(env: &Env, setup: &Setup) -> ChildGuard {
    ChildGuard::spawn(
        imgfleet_command(env!("CARGO_BIN_EXE_imgfleet-e2e-worker"), env, setup, &env.endpoint)
            .arg("run")
            .env("IMGFLEET_CONCURRENCY", "1")
            .env("IMGFLEET_VISIBILITY_TIMEOUT_SECS", "10"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_uploads_with_a_worker_killed_midway_lose_nothing() {
    let uploads: usize = std::env::var("IMGFLEET_SOAK_UPLOADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let env = Env::new().await;
    let setup = env.setup("soak", 2, 10).await;
    let started = Instant::now();
    let mut a = start_worker(&env, &setup);
    let b = start_worker(&env, &setup);

    let poison: Vec<String> = (0..5).map(|i| format!("poison {i}: not a message imgfleet understands")).collect();
    for p in &poison {
        env.send(&setup.queue_url, p).await;
    }
    let keys: Vec<String> = (0..uploads).map(|i| format!("uploads/soak/{:02}/{i:04}.jpg", i % 50)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, key) in keys.iter().enumerate() {
        let (uploader, bucket, key) = (env.clone(), setup.bucket.clone(), key.clone());
        tasks.spawn(async move { uploader.upload(&bucket, &key, photo(96 + (i % 7) as u32, 64)).await });
        if tasks.len() >= 16 {
            tasks.join_next().await.unwrap().unwrap();
        }
        if i == uploads / 2 {
            // Mid-way, while jobs run: kill one worker outright, then start it again.
            a.signal("KILL");
            a.wait();
            a = start_worker(&env, &setup);
        }
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    let uploaded = started.elapsed();

    let wanted: HashSet<String> = keys.iter().cloned().collect();
    let events = env
        .wait_events(&setup.stream, Duration::from_secs(600), |e| {
            e.iter().filter(|ev| ev.kind == EventType::Completed).map(|ev| &ev.source.key).collect::<HashSet<_>>().len()
                == uploads
        })
        .await;
    let done = started.elapsed();
    env.wait_queue_empty(&setup.queue_url, Duration::from_secs(120)).await;
    let completed: Vec<_> = events.iter().filter(|e| e.kind == EventType::Completed).collect();
    let keys_done: HashSet<String> = completed.iter().map(|e| e.source.key.clone()).collect();
    assert_eq!(keys_done, wanted, "every upload completed");
    // Duplicates (a job whose message came back after the kill) carry the same job id.
    let mut ids: HashMap<&str, HashSet<&str>> = HashMap::new();
    for e in &completed {
        ids.entry(e.source.key.as_str()).or_default().insert(e.job_id.as_str());
    }
    assert!(ids.values().all(|s| s.len() == 1), "one job id per upload");
    assert!(
        events.iter().all(|e| e.kind != EventType::Failed || e.job_id.starts_with("message-")),
        "only poison failed"
    );

    // The dead-letter queue holds exactly the poison messages.
    let all_dead = || async { env.queue_counts(&setup.dlq_url).await.0 >= poison.len() as i64 };
    eventually(Duration::from_secs(120), "poison messages did not all reach the dead-letter queue", all_dead).await;
    let mut dead = drain(&env, &setup.dlq_url).await;
    dead.sort();
    assert_eq!(dead, poison);
    assert_eq!(env.queue_counts(&setup.queue_url).await, (0, 0), "nothing stuck in flight");

    eprintln!(
        "soak: {uploads} uploads in {:.1} s, all completed after {:.1} s ({:.1} jobs/s); {} duplicate completions; {} in the DLQ",
        uploaded.as_secs_f64(),
        done.as_secs_f64(),
        uploads as f64 / done.as_secs_f64(),
        completed.len() - uploads,
        dead.len()
    );
    for mut w in [a, b] {
        w.signal("TERM");
        w.wait();
    }
}
