//! `fedreq soak`: a long run over mosquitto with persistent sessions, crashing and restarting
//! node processes and restarting the broker, counting what completed and what was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use fedreq_driver::ResearcherHandle;
use fedreq_mem::rng::Rng;
use fedreq_mqtt::MqttConfig;
use fedreq_protocol::{Policy, Request, ResearcherConfig, Submission};
use serde_json::json;

use super::mosquitto::Mosquitto;
use super::{fail, millis};

/// Options of `soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Broadcast pings to send in all
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Nodes, in processes of --per-process each
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Nodes per `fedreq node` process: a crash takes them all down
    #[arg(long, default_value_t = 5)]
    per_process: usize,
    /// Requests in flight at once
    #[arg(long, default_value_t = 5)]
    concurrency: usize,
    /// Restart the broker (SIGTERM, persistence on) every this many requests, while requests
    /// are in flight
    #[arg(long, default_value_t = 10_000)]
    restart_every: usize,
    /// Kill a random node process (SIGKILL) every this many requests on average, and restart
    /// one killed earlier as often
    #[arg(long, default_value_t = 1_000)]
    crash_every: usize,
    /// Seed of the crashes
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run mosquitto in its default configuration (`persistence false`): a restart then
    /// forgets every session
    #[arg(long)]
    no_persistence: bool,
}

/// A `fedreq node` process and its nodes.
struct Site {
    ids: Vec<String>,
    child: Option<Child>,
}

pub fn run(args: SoakArgs, json_output: bool) -> Result<(), String> {
    if args.nodes == 0 || args.per_process == 0 || args.concurrency == 0 {
        return Err("--nodes, --per-process and --concurrency must be more than 0".into());
    }
    let folder = std::env::temp_dir().join(format!("fedreq-soak-{}", std::process::id()));
    std::fs::create_dir_all(&folder).map_err(fail)?;
    // mosquitto started as root runs as `mosquitto`, which must write its database here.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).map_err(fail)?;
    let persistence = match args.no_persistence {
        true => String::new(),
        false => format!(
            "persistence true\npersistence_location {}/",
            folder.display()
        ),
    };
    let mut broker = Mosquitto::start(&persistence)?
        .ok_or("soak needs mosquitto (apt-get install mosquitto)")?;
    let address = format!("127.0.0.1:{}", broker.port);
    let datasets = folder.join("datasets.json");
    std::fs::write(
        &datasets,
        json!([{"name": "soak", "data_type": "csv", "tags": ["soak"], "description": "soak",
                "shape": [1, 1], "dataset_id": "dataset_soak"}])
        .to_string(),
    )
    .map_err(fail)?;
    let mut sites: Vec<Site> = (0..args.nodes.div_ceil(args.per_process))
        .map(|p| {
            let count = args.per_process.min(args.nodes - p * args.per_process);
            let ids = (1..=count).map(|i| format!("soak{p:03}-{i}")).collect();
            Site { ids, child: None }
        })
        .collect();
    for site in &mut sites {
        site.child = Some(start_site(&site.ids, &address, &datasets)?);
    }
    let researcher = fedreq_mqtt::connect_researcher(
        MqttConfig::parse(&address).map_err(fail)?,
        ResearcherConfig {
            first_sequence: fedreq::requests::random_u64() >> 16,
            ..ResearcherConfig::new("researcher-soak")
        },
    )
    .map_err(fail)?;
    let up = |sites: &[Site]| -> BTreeSet<String> {
        sites
            .iter()
            .filter(|s| s.child.is_some())
            .flat_map(|s| s.ids.iter().cloned())
            .collect()
    };
    roster_becomes(&researcher, &up(&sites))?;

    let mut rng = Rng::new(args.seed);
    let mut down: Vec<usize> = Vec::new();
    let mut completions: BTreeMap<u64, u32> = BTreeMap::new();
    let (mut lost, mut replies, mut expected, mut crashes, mut restarts) = (0u64, 0u64, 0u64, 0, 0);
    // Where replies were lost: in a batch during a broker restart, right after a node process
    // came back, or neither.
    let mut lost_by: BTreeMap<&str, u64> = BTreeMap::new();
    let mut rss = vec![("start", rss_mb())];
    let policy = Policy::quiet(Duration::from_secs(10));
    let started = Instant::now();
    let mut sent = 0;
    while sent < args.requests {
        // Crashes and restarts between batches, at random; the roster shows them first.
        let batch = args.concurrency.min(args.requests - sent);
        let chance = batch as f64 / args.crash_every as f64;
        if rng.chance(chance) {
            let running: Vec<usize> = (0..sites.len())
                .filter(|&i| sites[i].child.is_some())
                .collect();
            if running.len() > 1 {
                let victim = running[rng.between(0, running.len() as u64 - 1) as usize];
                if let Some(mut child) = sites[victim].child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                down.push(victim);
                crashes += 1;
                roster_becomes(&researcher, &up(&sites))?;
            }
        }
        let mut moment = "steady";
        if !down.is_empty() && rng.chance(chance) {
            moment = "after_node_restart";
            let back = down.remove(0);
            sites[back].child = Some(start_site(&sites[back].ids, &address, &datasets)?);
            roster_becomes(&researcher, &up(&sites))?;
        }
        let nodes_up = up(&sites);
        let pending: Vec<_> = (0..batch)
            .map(|_| {
                let ping = Submission::broadcast(Request::ping()).with_policy(policy.clone());
                researcher.submit(ping)
            })
            .collect();
        let restart_now = (sent + batch) / args.restart_every > sent / args.restart_every;
        if restart_now {
            broker.restart()?;
            restarts += 1;
            moment = "broker_restart";
        }
        for answer in pending {
            let outcome = answer.recv().map_err(fail)?.map_err(fail)?;
            *completions.entry(outcome.id.0).or_default() += 1;
            let answered: BTreeSet<String> = outcome.online().into_iter().collect();
            let missing = nodes_up.difference(&answered).count() as u64;
            lost += missing;
            *lost_by.entry(moment).or_default() += missing;
            replies += answered.len() as u64;
            expected += nodes_up.len() as u64;
        }
        sent += batch;
        if restart_now {
            // Every running node back online before the next broadcast counts on it.
            roster_becomes(&researcher, &nodes_up)?;
        }
        if sent >= args.requests / 2 && rss.len() == 1 {
            rss.push(("middle", rss_mb()));
        }
    }
    rss.push(("end", rss_mb()));
    let elapsed = started.elapsed();
    for site in &mut sites {
        if let Some(mut child) = site.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let _ = std::fs::remove_dir_all(&folder);
    let once = completions.values().filter(|&&n| n == 1).count();
    let report = json!({
        "requests": args.requests, "nodes": args.nodes, "completed": completions.len(),
        "completed_exactly_once": once, "replies": replies, "replies_expected": expected,
        "replies_lost": lost, "replies_lost_by_moment": lost_by, "node_crashes": crashes, "broker_restarts": restarts,
        "elapsed_s": millis(elapsed) / 1000.0,
        "rss_mb": rss.iter().map(|(at, mb)| json!({"at": at, "mb": mb})).collect::<Vec<_>>(),
    });
    if json_output {
        outln!("{report}");
    } else {
        outln!(
            "{} requests to {} nodes in {:.1} s: {} completed, {once} exactly once; {replies} of {expected} replies from nodes up, {lost} lost ({lost_by:?}); {crashes} node process crashes, {restarts} broker restarts; resident memory {}",
            args.requests,
            args.nodes,
            elapsed.as_secs_f64(),
            completions.len(),
            rss.iter()
                .map(|(at, mb)| format!("{at} {mb} MiB"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match (once == args.requests, lost) {
        (true, 0) => Ok(()),
        _ => Err(format!(
            "{lost} replies lost, {once} of {} requests completed exactly once",
            args.requests
        )),
    }
}

/// `fedreq node` for these ids, returned once they are connected.
fn start_site(ids: &[String], broker: &str, datasets: &std::path::Path) -> Result<Child, String> {
    let prefix = ids[0].rsplit_once('-').map_or(ids[0].as_str(), |(p, _)| p);
    let mut child = Command::new(std::env::current_exe().map_err(fail)?)
        .args(["node", "--id", prefix, "--count", &ids.len().to_string()])
        .arg("--datasets")
        .arg(datasets)
        .args(["--broker", broker])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(fail)?;
    let mut line = String::new();
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut reader = BufReader::new(stderr);
    reader.read_line(&mut line).map_err(fail)?;
    if !line.contains("connected") {
        return Err(format!("a node process did not start: {line}"));
    }
    // Keep reading its stderr, so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    Ok(child)
}

/// Waits up to 30 s for the nodes online to be exactly `nodes`.
fn roster_becomes(researcher: &ResearcherHandle, nodes: &BTreeSet<String>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let roster = researcher.roster().recv().map_err(fail)?;
        let online: BTreeSet<String> = roster
            .into_iter()
            .filter(|(_, m)| m.online())
            .map(|(n, _)| n)
            .collect();
        if online == *nodes {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the roster has {} nodes online, {} expected",
                online.len(),
                nodes.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// This process's resident memory, in MiB.
fn rss_mb() -> f64 {
    super::memory_mb("VmRSS")
}
