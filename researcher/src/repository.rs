//! The file repository training plans travel through: a client for Fed-BioMed's upload
//! endpoint, an embedded server that speaks it, and the HTTP download nodes use.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedreq_mqtt::Fetcher;
use fedreq_protocol::node::FetchResult;
use serde_json::{json, Value};
use ureq::unversioned::multipart::{Form, Part};

/// How long one HTTP exchange with a repository may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest file the embedded repository takes, and a node downloads.
const MAX_FILE: u64 = 64 << 20;
/// What the embedded repository keeps in memory at most.
const MAX_STORED: u64 = 1 << 30;

/// An upload that did not give a download URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// Nothing answered at the address.
    #[error("cannot reach the file repository at {url}: {reason}")]
    Unreachable {
        /// The upload URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// 404: the upload URL is wrong.
    #[error("the file repository has no upload endpoint at {url} (HTTP 404)")]
    NotFound {
        /// The upload URL.
        url: String,
    },
    /// Another HTTP error.
    #[error("the file repository at {url} refused the upload: HTTP {status}")]
    Status {
        /// The upload URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The answer is not JSON with a `file` URL.
    #[error("the file repository at {url} answered without a `file` URL: {answer}")]
    BadAnswer {
        /// The upload URL.
        url: String,
        /// What it answered.
        answer: String,
    },
}

/// Uploads files as Fed-BioMed does: HTTP POST, multipart field `file`, to `UPLOADS_URL`; the
/// JSON answer's `file` field is the download URL.
#[derive(Clone, Debug)]
pub struct RepositoryClient {
    uploads_url: String,
}

impl RepositoryClient {
    /// A client for the upload endpoint at `uploads_url`, e.g. `http://localhost:8844/upload/`.
    pub fn new(uploads_url: impl Into<String>) -> Self {
        RepositoryClient {
            uploads_url: uploads_url.into(),
        }
    }

    /// The upload endpoint.
    pub fn uploads_url(&self) -> &str {
        &self.uploads_url
    }

    /// Uploads `content` as `file_name` and returns its download URL.
    pub fn upload(&self, file_name: &str, content: &[u8]) -> Result<String, UploadError> {
        let url = self.uploads_url.clone();
        let form = Form::new().part("file", Part::bytes(content).file_name(file_name));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into();
        let mut response = agent.post(&url).send(form).map_err(|e| match e {
            ureq::Error::StatusCode(404) => UploadError::NotFound { url: url.clone() },
            ureq::Error::StatusCode(status) => UploadError::Status {
                url: url.clone(),
                status,
            },
            other => UploadError::Unreachable {
                url: url.clone(),
                reason: other.to_string(),
            },
        })?;
        let answer = response.body_mut().read_to_string().unwrap_or_default();
        serde_json::from_str::<Value>(&answer)
            .ok()
            .and_then(|v| v.get("file")?.as_str().map(str::to_owned))
            .ok_or(UploadError::BadAnswer { url, answer })
    }
}

/// An HTTP repository on its own thread: `POST /upload/` (multipart field `file`) stores a
/// file and answers `{"file": URL}`; `GET URL` serves it back. Files live in memory.
pub struct RepositoryServer {
    address: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RepositoryServer {
    /// Starts on `address`; port 0 picks a free one.
    pub fn start(address: SocketAddr) -> std::io::Result<Self> {
        let server = tiny_http::Server::http(address).map_err(std::io::Error::other)?;
        let address = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
        let server = Arc::new(server);
        let files: Arc<Files> = Arc::default();
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("fedreq-repository".into())
            .spawn(move || {
                // A thread per exchange: a slow uploader does not hold back the downloads.
                for request in serving.incoming_requests() {
                    let files = Arc::clone(&files);
                    std::thread::spawn(move || serve(request, address, &files));
                }
            })?;
        Ok(RepositoryServer {
            address,
            server,
            thread: Some(thread),
        })
    }

    /// Starts on a free loopback port.
    pub fn start_local() -> std::io::Result<Self> {
        Self::start(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its upload URL, for [`RepositoryClient`] and `UPLOADS_URL`.
    pub fn uploads_url(&self) -> String {
        format!("http://{}/upload/", self.address)
    }
}

impl std::fmt::Debug for RepositoryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryServer")
            .field("address", &self.address)
            .finish()
    }
}

impl Drop for RepositoryServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The files stored, and their total size.
#[derive(Default)]
struct Store {
    files: HashMap<String, Vec<u8>>,
    bytes: u64,
}

type Files = Mutex<Store>;

fn serve(mut request: tiny_http::Request, address: SocketAddr, files: &Files) {
    let path = request
        .url()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let response = match (request.method(), path.as_str()) {
        (tiny_http::Method::Post, "/upload/" | "/upload") => match receive(&mut request) {
            Ok((name, content)) => {
                let mut store = files.lock().unwrap_or_else(|p| p.into_inner());
                if store.bytes + content.len() as u64 > MAX_STORED {
                    let full = json!({ "error": "the repository is full" }).to_string();
                    text(507, full, "application/json")
                } else {
                    let stored = format!("{}_{}", store.files.len() + 1, sanitize(&name));
                    store.bytes += content.len() as u64;
                    store.files.insert(stored.clone(), content);
                    // The address the uploader used, so a repository listening on 0.0.0.0
                    // hands out a URL its clients can reach.
                    let host = header(&request, "Host").unwrap_or_else(|| address.to_string());
                    let url = format!("http://{host}/uploads/{stored}");
                    text(201, json!({ "file": url }).to_string(), "application/json")
                }
            }
            Err(reason) => text(
                400,
                json!({ "error": reason }).to_string(),
                "application/json",
            ),
        },
        (tiny_http::Method::Get, path) if path.starts_with("/uploads/") => {
            let store = files.lock().unwrap_or_else(|p| p.into_inner());
            match store.files.get(&path["/uploads/".len()..]) {
                Some(content) => {
                    tiny_http::Response::from_data(content.clone()).with_status_code(200)
                }
                None => text(404, "not found".into(), "text/plain"),
            }
        }
        (_, path) if path.starts_with("/uploads/") => {
            text(405, "method not allowed".into(), "text/plain")
        }
        _ => text(404, "not found".into(), "text/plain"),
    };
    let _ = request.respond(response);
}

fn text(
    status: u16,
    body: String,
    content_type: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let header = tiny_http::Header::from_bytes("Content-Type", content_type).expect("valid header");
    tiny_http::Response::from_data(body.into_bytes())
        .with_status_code(status)
        .with_header(header)
}

fn header(request: &tiny_http::Request, name: &str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_owned())
}

/// The multipart field `file` of an upload: its file name and content.
fn receive(request: &mut tiny_http::Request) -> Result<(String, Vec<u8>), String> {
    let content_type = header(request, "Content-Type").ok_or("no Content-Type")?;
    let boundary = multer::parse_boundary(&content_type).map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_FILE + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if body.len() as u64 > MAX_FILE {
        return Err(format!("upload over {MAX_FILE} bytes"));
    }
    let stream =
        futures_util::stream::once(
            async move { Ok::<_, std::io::Error>(bytes::Bytes::from(body)) },
        );
    let mut multipart = multer::Multipart::new(stream, boundary);
    pollster::block_on(async {
        while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
            if field.name() == Some("file") {
                let name = field.file_name().unwrap_or("upload.py").to_owned();
                let content = field.bytes().await.map_err(|e| e.to_string())?;
                return Ok((name, content.to_vec()));
            }
        }
        Err("no `file` field".to_owned())
    })
}

/// A file name that stays one path segment.
fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.trim_matches('.').is_empty() {
        "upload".into()
    } else {
        clean
    }
}

/// Downloads over HTTP for nodes, on a thread of its own per download so the driver never waits.
pub fn http_fetcher() -> Arc<dyn Fetcher> {
    Arc::new(|url: String| {
        let (done, result) = flume::bounded(1);
        std::thread::spawn(move || {
            let _ = done.send(download(&url));
        });
        async move {
            result
                .recv_async()
                .await
                .unwrap_or_else(|_| FetchResult::Unreachable("the download thread stopped".into()))
        }
    })
}

/// One HTTP GET, as a node's download.
pub fn download(url: &str) -> FetchResult {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .build()
        .into();
    match agent.get(url).call() {
        Ok(mut response) => match response
            .body_mut()
            .with_config()
            .limit(MAX_FILE)
            .read_to_vec()
        {
            Ok(body) => FetchResult::Body(body),
            Err(e) => FetchResult::Unreachable(e.to_string()),
        },
        Err(ureq::Error::StatusCode(status)) => FetchResult::Status(status),
        Err(other) => FetchResult::Unreachable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_come_back_by_their_url_and_the_rest_is_404() {
        let server = RepositoryServer::start_local().unwrap();
        let client = RepositoryClient::new(server.uploads_url());
        let url = client.upload("my plan.py", b"class P: pass\n").unwrap();
        assert!(
            url.starts_with(&format!("http://{}/uploads/", server.address())),
            "{url}"
        );
        assert!(url.ends_with("my_plan.py"), "{url}");
        assert_eq!(
            download(&url),
            FetchResult::Body(b"class P: pass\n".to_vec())
        );
        assert_eq!(
            download(&format!("http://{}/uploads/nope.py", server.address())),
            FetchResult::Status(404)
        );
    }

    #[test]
    fn a_repository_on_every_interface_hands_out_the_address_its_client_used() {
        let server = RepositoryServer::start(SocketAddr::from(([0, 0, 0, 0], 0))).unwrap();
        let uploads = format!("http://127.0.0.1:{}/upload/", server.address().port());
        let url = RepositoryClient::new(uploads).upload("p.py", b"x").unwrap();
        assert!(
            url.starts_with(&format!(
                "http://127.0.0.1:{}/uploads/",
                server.address().port()
            )),
            "{url}"
        );
        assert_eq!(download(&url), FetchResult::Body(b"x".to_vec()));
    }

    #[test]
    fn upload_errors_name_the_url_and_the_cause() {
        let server = RepositoryServer::start_local().unwrap();
        let wrong = format!("http://{}/elsewhere/", server.address());
        let err = RepositoryClient::new(&wrong)
            .upload("p.py", b"x")
            .unwrap_err();
        assert!(matches!(err, UploadError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains(&wrong));
        let refused = format!("http://{}/uploads/", server.address());
        let err = RepositoryClient::new(&refused)
            .upload("p.py", b"x")
            .unwrap_err();
        assert!(
            matches!(err, UploadError::Status { status: 405, .. }),
            "{err}"
        );

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let nowhere = format!("http://127.0.0.1:{port}/upload/");
        let err = RepositoryClient::new(&nowhere)
            .upload("p.py", b"x")
            .unwrap_err();
        assert!(matches!(err, UploadError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains(&nowhere), "{err}");
        assert!(matches!(download(&nowhere), FetchResult::Unreachable(_)));
    }
}
