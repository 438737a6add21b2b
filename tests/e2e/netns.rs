//! Network namespaces made by the tests themselves: a veth pair from the
//! root namespace into a fresh namespace, with addresses in 198.18.0.0/15
//! (the range set aside for benchmarking), removed on drop.

use std::process::{Command, Output};

/// Why namespace tests cannot run here, or `None` when they can. A test
/// that gets a reason prints it and skips; CI runs as root, where they run.
pub fn unavailable() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user.
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if euid != 0 {
        return Some("needs root (network namespaces, raw sockets)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("needs `ip` from iproute2 (scripts/test installs it)".into()),
    }
}

/// Prints why a test is skipped; returns true when it must skip.
pub fn skip(test: &str) -> bool {
    match unavailable() {
        Some(why) => {
            println!("SKIPPED {test}: {why}");
            eprintln!("SKIPPED {test}: {why}");
            true
        }
        None => false,
    }
}

pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A namespace joined to the root namespace by a veth pair.
pub struct Netns {
    pub name: String,
    /// The veth end in the root namespace.
    pub host_if: String,
    /// The veth end inside the namespace.
    pub ns_if: String,
    /// `198.18.TAG`: this namespace's /24.
    pub prefix: String,
}

impl Netns {
    /// A namespace with `lo` up and, with `link`, a veth whose root side
    /// is `198.18.TAG.1/24` and namespace side `198.18.TAG.2/24`. Each test
    /// uses its own tags; namespace tests run one at a time (the `netns`
    /// test group in `.config/nextest.toml`), so subnets never collide.
    pub fn new(tag: u8, link: bool) -> Netns {
        let pid = std::process::id();
        let name = format!("wp{pid}-{tag}");
        let n = Netns {
            host_if: format!("wh{}x{tag}", pid % 100_000),
            ns_if: format!("wn{}x{tag}", pid % 100_000),
            prefix: format!("198.18.{tag}"),
            name,
        };
        let _ = Command::new("ip").args(["netns", "del", &n.name]).output();
        run(&["ip", "netns", "add", &n.name]);
        n.exec(&["ip", "link", "set", "lo", "up"]);
        if link {
            run(&[
                "ip", "link", "add", &n.host_if, "type", "veth", "peer", "name", &n.ns_if,
            ]);
            run(&["ip", "link", "set", &n.ns_if, "netns", &n.name]);
            run(&[
                "ip",
                "addr",
                "add",
                &format!("{}.1/24", n.prefix),
                "dev",
                &n.host_if,
            ]);
            run(&["ip", "link", "set", &n.host_if, "up"]);
            n.exec(&[
                "ip",
                "addr",
                "add",
                &format!("{}.2/24", n.prefix),
                "dev",
                &n.ns_if,
            ]);
            n.exec(&["ip", "link", "set", &n.ns_if, "up"]);
        }
        n
    }

    /// An address in this namespace's /24.
    pub fn addr(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    /// Runs a command inside the namespace and insists it succeeds.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Runs a command inside the namespace, whatever its result.
    pub fn try_exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Adds `PREFIX.host/24` to the namespace side.
    pub fn add_addr(&self, host: u8) {
        self.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", self.addr(host)),
            "dev",
            &self.ns_if,
        ]);
    }

    /// Takes the namespace side of the link down: the node stops answering.
    pub fn link_down(&self) {
        self.exec(&["ip", "link", "set", &self.ns_if, "down"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
