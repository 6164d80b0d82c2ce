//! Downloads images from user-given URLs without letting them reach inside our network.
//!
//! Image URLs are user input. Only http and https are fetched; a host must resolve to public
//! addresses unless an address falls in `IMAGE_FETCH_ALLOWED_NETWORKS`. The check runs in the
//! DNS resolver reqwest connects through, so the address checked is the address connected to
//! (no DNS-rebinding gap), and again for every redirect hop, which is followed by hand. IP
//! literals, which reqwest does not resolve, are checked before the request. Bodies are
//! counted while streaming and cut off at the byte limit.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use reqwest::{
    StatusCode,
    dns::{Addrs, Name, Resolve, Resolving},
};
use url::Url;

use crate::failure::Failure;

/// Limits and policy of the fetcher.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// Networks that may be fetched although not public (`IMAGE_FETCH_ALLOWED_NETWORKS`).
    pub allowed_networks: Vec<IpNet>,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for the whole download, redirects included.
    pub total_timeout: Duration,
    /// The largest body accepted.
    pub max_bytes: u64,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
    /// An egress proxy for every download (`IMAGE_FETCH_PROXY`); none by default, and the
    /// environment's proxy variables are ignored (see the module's note).
    pub proxy: Option<Url>,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            allowed_networks: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(30),
            max_bytes: 20 * 1024 * 1024,
            max_redirects: 5,
            proxy: None,
        }
    }
}

/// A downloaded image.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: Bytes,
    /// The URL after redirects.
    pub final_url: Url,
}

/// The error a refused address raises inside the resolver, recognised again afterwards.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// True when `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()           // 0.0.0.0 (and 0/8 below)
                || a == 0
                || v4.is_loopback()         // 127/8
                || v4.is_private()          // 10/8, 172.16/12, 192.168/16
                || v4.is_link_local()       // 169.254/16, cloud metadata
                || (a == 100 && (64..128).contains(&b)) // 100.64/10 carrier-grade NAT
                || (a == 192 && b == 0 && c == 0)       // 192.0.0/24 protocol assignments
                || (a == 192 && b == 0 && c == 2)       // documentation
                || (a == 198 && (b == 18 || b == 19))   // benchmarking
                || (a == 198 && b == 51 && c == 100)    // documentation
                || (a == 203 && b == 0 && c == 113)     // documentation
                || v4.is_multicast()
                || a >= 240) // reserved and broadcast
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            // Only global unicast (2000::/3) outside documentation and translation ranges.
            let global_unicast = (segments[0] & 0xe000) == 0x2000;
            let documentation = segments[0] == 0x2001 && segments[1] == 0x0db8;
            let six_to_four = segments[0] == 0x2002; // embeds an arbitrary IPv4 address
            let teredo = segments[0] == 0x2001 && segments[1] == 0;
            global_unicast && !documentation && !six_to_four && !teredo
        }
    }
}

/// Whether `ip` may be connected to under `allowed`.
pub fn is_allowed(ip: IpAddr, allowed: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    is_public(ip) || allowed.iter().any(|net| net.contains(&ip))
}

struct GuardedResolver {
    allowed: Arc<Vec<IpNet>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| is_allowed(addr.ip(), &allowed))
                .collect();
            if permitted.is_empty() {
                let shown: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
                tracing::warn!(
                    host,
                    addresses = shown.join(", "),
                    "Image host refused: it resolves to non-public addresses."
                );
                return Err(Box::new(Refused(format!(
                    "refused: {host} does not resolve to a public address"
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

/// Fetches images under the settings' policy.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    settings: FetchSettings,
}

impl Fetcher {
    pub fn new(settings: FetchSettings) -> anyhow::Result<Self> {
        let builder = reqwest::Client::builder();
        let builder = match &settings.proxy {
            Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy.clone())?),
            None => builder.no_proxy(),
        };
        let client = builder
            .dns_resolver(Arc::new(GuardedResolver {
                allowed: Arc::new(settings.allowed_networks.clone()),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!(
                "catalog-image-processor/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self { client, settings })
    }

    /// Downloads `url`, following at most `max_redirects` redirects, each checked again.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, Failure> {
        let deadline = Instant::now() + self.settings.total_timeout;
        tokio::time::timeout(self.settings.total_timeout, self.fetch_inner(url, deadline))
            .await
            .unwrap_or_else(|_| {
                Err(Failure::transient(format!(
                    "timed out after {} s",
                    self.settings.total_timeout.as_secs()
                )))
            })
    }

    async fn fetch_inner(&self, url: &str, _deadline: Instant) -> Result<Fetched, Failure> {
        let mut current =
            Url::parse(url).map_err(|e| Failure::permanent(format!("invalid URL: {e}")))?;
        for _ in 0..=self.settings.max_redirects {
            self.check_url(&current)?;
            let response = self
                .client
                .get(current.clone())
                .send()
                .await
                .map_err(classify_request_error)?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        Failure::permanent(format!("HTTP {status} without a Location"))
                    })?;
                current = current
                    .join(location)
                    .map_err(|e| Failure::permanent(format!("invalid redirect target: {e}")))?;
                continue;
            }
            if status != StatusCode::OK {
                return Err(Failure::from_status(status.as_u16()));
            }
            let bytes = self.read_limited(response).await?;
            return Ok(Fetched {
                bytes,
                final_url: current,
            });
        }
        Err(Failure::permanent(format!(
            "more than {} redirects",
            self.settings.max_redirects
        )))
    }

    /// Scheme and IP-literal checks; host names are checked by the resolver.
    fn check_url(&self, url: &Url) -> Result<(), Failure> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::permanent(format!(
                "refused: scheme {} is not http(s)",
                url.scheme()
            )));
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(Failure::permanent("refused: the URL has no host")),
        };
        if let Some(ip) = ip {
            if !is_allowed(ip, &self.settings.allowed_networks) {
                return Err(Failure::permanent(format!(
                    "refused: {ip} is not a public address"
                )));
            }
        }
        Ok(())
    }

    async fn read_limited(&self, mut response: reqwest::Response) -> Result<Bytes, Failure> {
        let max = self.settings.max_bytes;
        let too_large = || Failure::permanent(format!("the image is larger than {max} bytes"));
        if response.content_length().is_some_and(|len| len > max) {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(classify_request_error)? {
            if body.len() as u64 + chunk.len() as u64 > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// A refusal by the resolver is permanent; anything else on the way is transient.
fn classify_request_error(error: reqwest::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Failure::permanent(refused.0.clone());
        }
        source = e.source();
    }
    if error.is_timeout() {
        Failure::transient("timed out")
    } else if error.is_connect() {
        Failure::transient(format!("connection failed: {}", root_cause(&error)))
    } else {
        Failure::transient(format!("download failed: {}", root_cause(&error)))
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_private_link_local_and_unspecified_addresses_are_not_public() {
        for s in [
            "127.0.0.1",
            "127.0.0.2",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "ff02::1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip(s)), "{s} must not be public");
        }
    }

    #[test]
    fn ordinary_addresses_are_public() {
        for s in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn allowed_networks_open_exactly_their_range() {
        let allowed: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(is_allowed(ip("127.0.0.1"), &allowed));
        assert!(is_allowed(ip("::ffff:127.0.0.1"), &allowed));
        assert!(!is_allowed(ip("127.0.0.2"), &allowed));
        assert!(!is_allowed(ip("10.0.0.1"), &allowed));
    }

    #[tokio::test]
    async fn ip_literals_and_other_schemes_are_refused_before_any_request() {
        let fetcher = Fetcher::new(FetchSettings::default()).unwrap();
        for url in [
            "http://127.0.0.1:1/a.jpg",
            "http://[::1]:1/a.jpg",
            "http://0.0.0.0:1/",
            "ftp://example.com/a.jpg",
            "http://169.254.169.254/latest",
        ] {
            let failure = fetcher.fetch(url).await.unwrap_err();
            assert!(
                !failure.is_transient() && failure.reason.starts_with("refused"),
                "{url}: {failure}"
            );
        }
    }

    #[tokio::test]
    async fn https_urls_are_fetched_like_http_ones() {
        // Nothing listens on port 1: the attempt gets as far as connecting, which proves the
        // client speaks https (a client without TLS fails before, on the scheme).
        let settings = FetchSettings {
            allowed_networks: vec!["127.0.0.1/32".parse().unwrap()],
            ..FetchSettings::default()
        };
        let failure = Fetcher::new(settings)
            .unwrap()
            .fetch("https://127.0.0.1:1/a.jpg")
            .await
            .unwrap_err();
        assert!(
            failure.is_transient() && failure.reason.starts_with("connection failed"),
            "{failure}"
        );
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused() {
        let fetcher = Fetcher::new(FetchSettings::default()).unwrap();
        let failure = fetcher.fetch("http://localhost:1/a.jpg").await.unwrap_err();
        assert!(
            !failure.is_transient() && failure.reason.contains("not resolve to a public"),
            "{failure}"
        );
    }

    #[tokio::test]
    async fn a_refusal_names_no_resolved_address() {
        let fetcher = Fetcher::new(FetchSettings::default()).unwrap();
        let failure = fetcher.fetch("http://localhost:1/a.jpg").await.unwrap_err();
        for address in ["127.0.0.1", "::1"] {
            assert!(
                !failure.reason.contains(address),
                "the public reason leaks {address}: {failure}"
            );
        }
    }

    /// Run by `environment_proxies_are_ignored` in a child process whose environment names
    /// a proxy (a test cannot change its own process's environment safely).
    #[tokio::test]
    #[ignore = "run by environment_proxies_are_ignored, with a proxy in its environment"]
    async fn fetch_under_a_proxy_environment() {
        let fetcher = Fetcher::new(FetchSettings::default()).unwrap();
        let outcome = fetcher.fetch("http://localhost:1/internal.png").await;
        assert!(
            outcome
                .as_ref()
                .is_err_and(|f| f.reason.starts_with("refused")),
            "{outcome:?}"
        );
    }

    #[test]
    fn environment_proxies_are_ignored() {
        use std::io::{Read, Write};
        // A stand-in proxy that would fetch anything: it answers every request with bytes.
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", proxy.local_addr().unwrap());
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for mut socket in proxy.incoming().flatten() {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = socket.read(&mut [0_u8; 4096]);
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret");
            }
        });
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "fetch::tests::fetch_under_a_proxy_environment",
                "--exact",
                "--ignored",
            ])
            .env("HTTP_PROXY", &url)
            .env("http_proxy", &url)
            .env("ALL_PROXY", &url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap();
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the download went through the environment's proxy"
        );
        assert!(
            child.status.success(),
            "{}",
            String::from_utf8_lossy(&child.stdout)
        );
    }
}
