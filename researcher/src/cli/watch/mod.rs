//! `fedreq watch`: one live page of the federation, served on this machine. The page gets
//! what happens as server-sent events and asks for ping, list and search; a random token in
//! its URL guards every path, since the page can send requests.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use fedreq::Requests;
use fedreq_protocol::{Outcome, Request, Submission};
use serde_json::{json, Value};
use tiny_http::{Header, Method, Response, Server};

use super::{fail, millis, Global};

const PAGE: &str = include_str!("page.html");
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");

/// What a page that connects is sent first: the latest of each kind, bounded.
const KEPT_LOGS: usize = 500;
const KEPT_REQUESTS: usize = 200;
const KEPT_SCALARS: usize = 20_000;
/// Events a page may fall behind by before it is dropped (it reconnects and starts afresh).
const PAGE_QUEUE: usize = 4_096;
/// How often the roster is read for changes.
const ROSTER_EVERY: Duration = Duration::from_millis(200);

/// Options of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Where the page is served (port 0: any free one)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

pub fn watch(global: &Global, args: WatchArgs) -> Result<(), String> {
    let requests = Arc::new(global.connect()?);
    let server = Server::http(args.listen)
        .map_err(|e| format!("cannot serve the page on {}: {e}", args.listen))?;
    let address = server
        .server_addr()
        .to_ip()
        .ok_or("the page is served on a socket without an address")?;
    let token = token()?;
    let hub = Arc::new(Hub::default());
    hub.feed_from(&requests);
    {
        let (hub, requests) = (Arc::clone(&hub), Arc::clone(&requests));
        std::thread::spawn(move || hub.watch_roster(&requests));
    }
    outln!("http://{address}/?token={token}");
    eprintln!(
        "serving the live page as {}; Ctrl-C to stop",
        requests.config().researcher_id
    );
    let policy = global.policy();
    for request in server.incoming_requests() {
        let (hub, requests, token, policy) = (
            Arc::clone(&hub),
            Arc::clone(&requests),
            token.clone(),
            policy.clone(),
        );
        std::thread::spawn(move || serve(request, &token, &hub, &requests, policy));
    }
    Ok(())
}

/// 128 random bits from the operating system, in hex.
fn token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for the page's token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn serve(
    request: tiny_http::Request,
    token: &str,
    hub: &Hub,
    requests: &Requests,
    policy: fedreq_protocol::Policy,
) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    // Compared in full whatever matches, so that timing says nothing of the token.
    let given = params.get("token").map_or("", String::as_str);
    let allowed = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !allowed {
        let _ = request.respond(text(
            403,
            "text/plain",
            "a token is needed: use the URL fedreq watch printed",
        ));
        return;
    }
    let _ = match (request.method(), path) {
        (Method::Get, "/") => request.respond(text(
            200,
            "text/html; charset=utf-8",
            &PAGE.replace("{{TOKEN}}", token),
        )),
        (Method::Get, "/uPlot.js") => request.respond(text(200, "text/javascript", UPLOT_JS)),
        (Method::Get, "/uPlot.css") => request.respond(text(200, "text/css", UPLOT_CSS)),
        (Method::Get, "/events") => return hub.stream(request),
        (Method::Post, "/ping" | "/list" | "/search") => {
            let tags: Vec<String> = params
                .get("tags")
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let command = match path {
                "/ping" => Request::ping(),
                "/list" => Request::list(),
                _ if tags.is_empty() => {
                    let _ = request.respond(text(400, "text/plain", "search needs tags"));
                    return;
                }
                _ => Request::search(tags),
            };
            let outcome = hub.run(requests, Submission::broadcast(command).with_policy(policy));
            request.respond(text(200, "application/json", &outcome.to_string()))
        }
        _ => request.respond(text(404, "text/plain", "no such page")),
    };
}

fn text(status: u16, content_type: &str, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"))
}

fn header(field: &str, value: &str) -> Header {
    Header::from_bytes(field.as_bytes(), value.as_bytes()).expect("valid header")
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Everything the pages are told, and the pages listening.
#[derive(Default)]
struct Hub {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    roster: Value,
    /// Node id -> when it last spoke (Unix ms): replies, logs, scalars.
    heard: BTreeMap<String, f64>,
    datasets: BTreeMap<String, Value>,
    logs: VecDeque<Value>,
    /// As sent (JSON text): the most numerous, a new page's snapshot copies only pointers.
    scalars: VecDeque<Arc<str>>,
    requests: VecDeque<Value>,
    pages: Vec<flume::Sender<String>>,
    next_request: u64,
    /// Counted here, as the TensorBoard files count them, not by each page: a page opened
    /// late sees the same steps.
    steps: fedreq::scalars::Steps,
}

impl Hub {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `data` (the last `kept` of its kind, or the one of it) and tells every page.
    fn publish(&self, kind: &str, data: Value) {
        let text = data.to_string();
        let event = format!("event: {kind}\ndata: {text}\n\n");
        let mut state = self.state();
        match kind {
            "roster" => state.roster = data,
            "datasets" => {
                let node = data["node_id"].as_str().unwrap_or_default().to_owned();
                state.datasets.insert(node, data);
            }
            "log" => keep(&mut state.logs, data, KEPT_LOGS),
            "scalar" => keep(&mut state.scalars, Arc::from(text), KEPT_SCALARS),
            "request" => {
                // A request is kept once, as it is now.
                let id = data["id"].clone();
                state.requests.retain(|r| r["id"] != id);
                keep(&mut state.requests, data, KEPT_REQUESTS);
            }
            _ => {}
        }
        // A page that is gone or too far behind is dropped.
        state
            .pages
            .retain(|page| page.try_send(event.clone()).is_ok());
    }

    fn heard(&self, node: &str) {
        self.state().heard.insert(node.to_owned(), unix_ms());
    }

    /// Node logs, errors and scalars, as they arrive.
    fn feed_from(self: &Arc<Self>, requests: &Requests) {
        let hub = Arc::clone(self);
        requests.set_log_handler(move |log| {
            hub.heard(&log.node_id);
            hub.publish("log", json!({ "node_id": log.node_id, "level": log.level, "text": log.text, "at": unix_ms() }));
        });
        let hub = Arc::clone(self);
        requests.set_error_handler(move |error| {
            hub.heard(&error.node_id);
            let text = format!("{} {}", error.errnum, error.extra_msg);
            hub.publish("log", json!({ "node_id": error.node_id, "level": "ERROR", "text": text, "at": unix_ms() }));
        });
        let hub = Arc::clone(self);
        requests.add_monitor_callback(move |scalar| {
            hub.heard(&scalar.node_id);
            let (phase, _) = fedreq::scalars::phase(scalar);
            for (metric, value) in &scalar.metric {
                if let Some(value) = value.as_f64() {
                    let step = hub.state().steps.next(scalar, phase, metric);
                    let tag = fedreq::scalars::tag(scalar, metric);
                    hub.publish(
                        "scalar",
                        json!({ "job_id": scalar.job_id, "node_id": scalar.node_id,
                        "tag": tag, "step": step, "value": value, "at": unix_ms() }),
                    );
                }
            }
        });
    }

    /// Reads the roster often, and tells the pages when it changed: nodes online and
    /// offline by their presence, and those heard without it.
    fn watch_roster(&self, requests: &Requests) {
        // When each node was last heard, as the pages were told.
        let mut told: BTreeMap<String, f64> = BTreeMap::new();
        loop {
            let Ok(roster) = requests.roster() else {
                return;
            };
            let heard = self.state().heard.clone();
            let mut nodes: BTreeMap<String, Value> = roster
                .iter()
                .map(|(node, member)| {
                    let since = match member.online() {
                        true => Some(Duration::from_nanos(member.incarnation).as_secs_f64() * 1e3),
                        false => member.since.map(|at| at.since_epoch().as_secs_f64() * 1e3),
                    };
                    let state = if member.online() { "online" } else { "offline" };
                    (
                        node.to_string(),
                        json!({ "node_id": node, "state": state, "since": since }),
                    )
                })
                .collect();
            for node in heard.keys() {
                nodes
                    .entry(node.clone())
                    .or_insert_with(|| json!({ "node_id": node, "state": "heard", "since": null }));
            }
            let roster = json!({ "nodes": nodes.into_values().collect::<Vec<_>>() });
            if roster != self.state().roster {
                self.publish("roster", roster);
            }
            // Who spoke since: a few nodes, not the roster again.
            let spoke: BTreeMap<String, f64> = heard
                .into_iter()
                .filter(|(node, at)| told.get(node) != Some(at))
                .collect();
            if !spoke.is_empty() {
                self.publish("heard", json!(spoke));
                told.extend(spoke);
            }
            std::thread::sleep(ROSTER_EVERY);
        }
    }

    /// Runs a request of the page's, telling the pages when it starts and how it ended.
    fn run(&self, requests: &Requests, submission: Submission) -> Value {
        let command = submission.request.command().to_string();
        let id = {
            let mut state = self.state();
            state.next_request += 1;
            state.next_request
        };
        let started = (Instant::now(), unix_ms());
        let mut record =
            json!({ "id": id, "command": command, "state": "in flight", "started": started.1 });
        self.publish("request", record.clone());
        let outcome = requests.request(submission);
        record["state"] = json!("done");
        record["elapsed_ms"] = json!(millis(started.0.elapsed()));
        match &outcome {
            Ok(outcome) => {
                for node in outcome.online() {
                    self.heard(&node);
                }
                record["nodes"] = json!(outcome.online());
                record["missing"] = json!(outcome.missing);
                record["completion"] = json!(outcome.completion);
                if command == "list" {
                    for (node, datasets) in outcome.datasets() {
                        self.publish("datasets", json!({ "node_id": node, "datasets": datasets }));
                    }
                }
                record["datasets"] = json!(datasets_of(outcome));
            }
            Err(e) => record["error"] = json!(fail(e)),
        }
        self.publish("request", record.clone());
        record
    }

    /// A page's event stream: everything kept, then what happens.
    fn stream(&self, request: tiny_http::Request) {
        let (page, events) = flume::bounded(PAGE_QUEUE);
        let (rest, scalars) = {
            let mut state = self.state();
            state.pages.push(page);
            let rest = json!({
                "roster": state.roster,
                "heard": state.heard,
                "datasets": state.datasets.values().collect::<Vec<_>>(),
                "logs": state.logs,
                "requests": state.requests,
            });
            (rest, state.scalars.iter().cloned().collect::<Vec<_>>())
        };
        // The scalars kept as text go in as they are, outside the lock.
        let mut snapshot = rest.to_string();
        snapshot.pop();
        snapshot = format!("{snapshot},\"scalars\":[{}]}}", scalars.join(","));
        let headers = Response::empty(200)
            .with_header(header("Content-Type", "text/event-stream"))
            .with_header(header("Cache-Control", "no-store"));
        // tiny_http buffers a streamed body by 8 KiB: the socket itself is written instead.
        let mut socket = request.upgrade("event-stream", headers);
        let mut send = |event: &str| {
            socket
                .write_all(event.as_bytes())
                .and_then(|()| socket.flush())
        };
        if send(&format!("event: snapshot\ndata: {snapshot}\n\n")).is_err() {
            return;
        }
        loop {
            let sent = match events.recv_timeout(Duration::from_secs(15)) {
                Ok(event) => send(&event),
                // A comment now and then finds out when the page has gone.
                Err(flume::RecvTimeoutError::Timeout) => send(": still here\n\n"),
                Err(flume::RecvTimeoutError::Disconnected) => return,
            };
            if sent.is_err() {
                return;
            }
        }
    }
}

fn keep<T>(kept: &mut VecDeque<T>, data: T, at_most: usize) {
    if kept.len() == at_most {
        kept.pop_front();
    }
    kept.push_back(data);
}

/// A list's or search's datasets per node, by name.
fn datasets_of(outcome: &Outcome) -> BTreeMap<String, Vec<Value>> {
    outcome
        .datasets()
        .into_iter()
        .map(|(node, datasets)| {
            let names = datasets.iter().map(|d| d["name"].clone()).collect();
            (node.to_string(), names)
        })
        .collect()
}
