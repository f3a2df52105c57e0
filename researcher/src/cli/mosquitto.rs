//! mosquitto on a free loopback port, for `bench` and `soak`: Debian's build in its default
//! configuration plus the lines asked for, stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fail;

pub struct Mosquitto {
    binary: &'static str,
    child: Child,
    pub port: u16,
    config: PathBuf,
}

impl Mosquitto {
    /// Starts one with these extra configuration lines; `None` when mosquitto is not installed.
    pub fn start(extra_config: &str) -> Result<Option<Mosquitto>, String> {
        let Some(binary) = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            return Ok(None);
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(fail)?
            .port();
        let config = std::env::temp_dir().join(format!("fedreq-mosquitto-{port}.conf"));
        let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra_config}\n");
        std::fs::write(&config, text).map_err(fail)?;
        let child = spawn(binary, &config, port)?;
        Ok(Some(Mosquitto {
            binary,
            child,
            port,
            config,
        }))
    }

    /// Stops it as a service manager does (SIGTERM: it writes out what it persists) and starts
    /// it again on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.child = spawn(self.binary, &self.config, self.port)?;
        Ok(())
    }
}

fn spawn(binary: &str, config: &std::path::Path, port: u16) -> Result<Child, String> {
    let child = Command::new(binary)
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start mosquitto: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("mosquitto did not listen on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}
