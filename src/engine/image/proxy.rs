//! Which HTTP proxy, if any, each image request goes through: read from the environment the way
//! FreeBSD's fetch(3), which pot downloads with, reads it (lib/libfetch in freebsd-src):
//!
//! - `http_get_proxy` (http.c) takes `HTTP_PROXY`, else `http_proxy`, for `http://` and
//!   `https://` URLs alike. The first that is set decides: set but empty means no proxy. A proxy
//!   URL without a scheme is `http://`; one without a port gets `HTTP_DEFAULT_PROXY_PORT`, 3128
//!   (`fetch_default_proxy_port`, common.c). fetch(3) drops a proxy of another scheme, or one
//!   `fetchParseURL` cannot read, without a word.
//! - `fetch_no_proxy_match` (common.c) takes `NO_PROXY`, else `no_proxy`: `*` alone bypasses the
//!   proxy for every host; anything else is a list of suffixes separated by commas or white
//!   space, each compared with the end of the host name regardless of case (`example.org` also
//!   matches `images.example.org`, and `ample.org` matches `example.org`).
//! - `http_connect` and `http_request_body` (http.c) send the proxy URL's `user:password` as
//!   `Proxy-Authorization: Basic` only once the proxy has answered 407 ([`super::connect`],
//!   [`super::fetch`]).
//!
//! Deliberate differences, each documented in the README's Proxies section:
//! - libfetch reads no `HTTPS_PROXY`. curl, Go and most other clients do, and operators set it,
//!   so `HTTPS_PROXY` (else `https_proxy`) is honoured for `https://` images; when neither is set
//!   they fall back to `HTTP_PROXY`, as in fetch(3).
//! - A proxy variable that names no usable proxy (another scheme, a bad port, no host) fails
//!   the downloads that would go through it, with a message naming the variable, instead of
//!   going around the proxy the operator asked for.
//! - A `NO_PROXY` entry also matches an IPv6 host without its brackets (`::1`, as curl writes
//!   it); libfetch compares `[::1]` only.
//! - A bare `host` is read as `http://host:3128`; fetchParseURL wants a `:port` or a `/` after a
//!   scheme-less host.
//! - `HTTP_PROXY_AUTH` and `~/.netrc` are not read: the proxy's credentials come from its URL.

use super::reference::Credentials;
use hyper::Uri;

/// fetch(3)'s `HTTP_DEFAULT_PROXY_PORT`.
const DEFAULT_PROXY_PORT: u16 = 3128;

/// The proxies of the environment the plugin (or potctl) runs in, read once by
/// [`Proxies::from_env`]. The default is no proxy at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    http: Choice,
    /// `None`: neither `HTTPS_PROXY` nor `https_proxy` is set, and `https://` goes as `http://`.
    https: Option<Choice>,
    no_proxy: NoProxy,
}

/// What a proxy variable says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Choice {
    /// Unset, or set but empty.
    #[default]
    Direct,
    Via(Proxy),
    Unusable(Unusable),
}

/// An `http://` proxy: where it listens, and the credentials its URL carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Proxy {
    /// The variable it was read from, for messages.
    variable: &'static str,
    /// `host:port`, an IPv6 host in brackets.
    authority: String,
    credentials: Option<Credentials>,
}

/// A proxy variable that names no proxy the downloads can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} names no usable proxy: {reason}")]
pub(super) struct Unusable {
    variable: &'static str,
    /// The value, its credentials shown as `***@`.
    value: String,
    reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum NoProxy {
    #[default]
    Nowhere,
    Everywhere,
    /// Host-name suffixes, lower case.
    Suffixes(Vec<String>),
}

impl Proxies {
    /// The proxies the variables `var` looks up name. Nothing is refused here: a variable that
    /// names no usable proxy fails only the downloads that would use it.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Proxies {
        // The upper-case name first; the first that is set decides, even when empty.
        let first = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|name| var(name).map(|value| (name, value)))
        };
        let choice = |(variable, value): (&'static str, String)| Choice::parse(variable, &value);
        Proxies {
            http: first(["HTTP_PROXY", "http_proxy"])
                .map(choice)
                .unwrap_or_default(),
            https: first(["HTTPS_PROXY", "https_proxy"]).map(choice),
            no_proxy: match first(["NO_PROXY", "no_proxy"]) {
                None => NoProxy::Nowhere,
                Some((_, list)) if list == "*" => NoProxy::Everywhere,
                Some((_, list)) => NoProxy::Suffixes(
                    list.split(|c: char| c == ',' || c.is_ascii_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(str::to_ascii_lowercase)
                        .collect(),
                ),
            },
        }
    }

    /// The proxy a request to `uri` goes through; `Ok(None)`: straight to its host.
    pub(super) fn for_uri(&self, uri: &Uri) -> Result<Option<&Proxy>, &Unusable> {
        if uri.host().is_none_or(|host| self.no_proxy.matches(host)) {
            return Ok(None);
        }
        let choice = match (uri.scheme_str(), &self.https) {
            (Some("https"), Some(https)) => https,
            _ => &self.http,
        };
        match choice {
            Choice::Direct => Ok(None),
            Choice::Via(proxy) => Ok(Some(proxy)),
            Choice::Unusable(unusable) => Err(unusable),
        }
    }
}

impl Choice {
    fn parse(variable: &'static str, value: &str) -> Choice {
        if value.is_empty() {
            return Choice::Direct;
        }
        match Proxy::parse(variable, value) {
            Ok(proxy) => Choice::Via(proxy),
            Err(reason) => Choice::Unusable(Unusable {
                variable,
                value: redact(value),
                reason,
            }),
        }
    }
}

impl NoProxy {
    fn matches(&self, host: &str) -> bool {
        match self {
            NoProxy::Nowhere => false,
            NoProxy::Everywhere => true,
            NoProxy::Suffixes(suffixes) => {
                let host = host.to_ascii_lowercase();
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                suffixes
                    .iter()
                    .any(|s| host.ends_with(s.as_str()) || bare.ends_with(s.as_str()))
            }
        }
    }
}

impl Proxy {
    /// `[http://][user[:password]@]host[:port][/…]`, as `fetchParseURL` reads it; the rest of
    /// the URL is ignored (fetch.3: "The document part is ignored").
    fn parse(variable: &'static str, value: &str) -> Result<Proxy, String> {
        let rest = match value.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "only http:// proxies are supported, not {scheme}://"
                ));
            }
            None => value,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(Credentials::from_userinfo(userinfo)), host_port),
            None => (None, authority),
        };
        let (host, port) = split_port(host_port)?;
        if host.is_empty() || host == "[]" {
            return Err("no host".to_string());
        }
        Ok(Proxy {
            variable,
            authority: format!("{host}:{}", port.unwrap_or(DEFAULT_PROXY_PORT)),
            credentials,
        })
    }

    /// Where to connect.
    pub(super) fn uri(&self) -> Uri {
        format!("http://{}", self.authority)
            .parse()
            .expect("a proxy's host and port were checked when it was read")
    }

    pub(super) fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }
}

/// `host[:port]` with `[v6]` hosts; fetch(3) wants a port from 1 to 65535.
fn split_port(host_port: &str) -> Result<(&str, Option<u16>), String> {
    let host_end = match host_port.strip_prefix('[') {
        Some(v6) => v6.find(']').ok_or("an unclosed [ in the host")? + 2,
        None => host_port.find(':').unwrap_or(host_port.len()),
    };
    let (host, rest) = host_port.split_at(host_end);
    let Some(port) = rest.strip_prefix(':') else {
        return match rest.is_empty() {
            true => Ok((host, None)),
            false => Err(format!("{rest:?} after the host")),
        };
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host, Some(p))),
        _ => Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
}

/// A proxy URL fit for messages: its `user:password@`, if any, shown as `***@`, with or without a
/// scheme (a proxy variable may have none).
fn redact(value: &str) -> String {
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), value),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}***@{host}{}", &rest[authority_end..]),
        None => value.to_string(),
    }
}

/// `http://host:port (HTTP_PROXY)`, its credentials shown as `***@`.
impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = if self.credentials.is_some() {
            "***@"
        } else {
            ""
        };
        write!(f, "http://{hidden}{} ({})", self.authority, self.variable)
    }
}

/// One line for the plugin's log: how each scheme's images are fetched, and which hosts go
/// around the proxies.
impl std::fmt::Display for Proxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let choice = |c: &Choice| match c {
            Choice::Direct => "direct".to_string(),
            Choice::Via(proxy) => format!("through {proxy}"),
            Choice::Unusable(unusable) => format!("refused: {unusable}"),
        };
        let https = self.https.as_ref().unwrap_or(&self.http);
        write!(
            f,
            "http:// {}; https:// {}",
            choice(&self.http),
            choice(https)
        )?;
        match &self.no_proxy {
            NoProxy::Nowhere => Ok(()),
            NoProxy::Everywhere => write!(f, "; direct to every host"),
            NoProxy::Suffixes(s) => write!(f, "; direct to hosts ending in {}", s.join(" ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    /// The authority `url` is fetched through; `Err`: the variable's message.
    fn via(proxies: &Proxies, url: &str) -> Result<Option<String>, String> {
        match proxies.for_uri(&url.parse().unwrap()) {
            Ok(proxy) => Ok(proxy.map(|p| p.authority.clone())),
            Err(unusable) => Err(unusable.to_string()),
        }
    }

    fn some(authority: &str) -> Result<Option<String>, String> {
        Ok(Some(authority.to_string()))
    }

    #[test]
    fn proxy_urls_are_read_as_fetch_reads_them() {
        let one = |value: &str| {
            let proxies = Proxies::from_env(env(&[("HTTP_PROXY", value)]));
            via(&proxies, "http://images.example.org/pots")
        };
        assert_eq!(one("http://proxy.example:8080"), some("proxy.example:8080"));
        assert_eq!(one("http://proxy.example"), some("proxy.example:3128"));
        assert_eq!(one("proxy.example:8080"), some("proxy.example:8080"));
        assert_eq!(one("proxy.example"), some("proxy.example:3128"));
        assert_eq!(
            one("HTTP://proxy.example/ignored"),
            some("proxy.example:3128")
        );
        assert_eq!(one("http://[2001:db8::1]:81/"), some("[2001:db8::1]:81"));
        assert_eq!(one("http://[2001:db8::1]"), some("[2001:db8::1]:3128"));
        assert_eq!(one(""), Ok(None));
    }

    #[test]
    fn a_variable_naming_no_usable_proxy_says_why_without_its_credentials() {
        let one = |value: &str| {
            let proxies = Proxies::from_env(env(&[("http_proxy", value)]));
            via(&proxies, "http://images.example.org/").unwrap_err()
        };
        assert_eq!(
            one("socks5://alice:s3cret@proxy.example:1080"),
            "http_proxy=\"socks5://***@proxy.example:1080\" names no usable proxy: only http:// proxies are supported, not socks5://"
        );
        assert_eq!(
            one("alice:s3cret@proxy.example:port"),
            "http_proxy=\"***@proxy.example:port\" names no usable proxy: port \"port\" is not a number from 1 to 65535"
        );
        for (value, reason) in [
            ("https://proxy.example", "not https://"),
            ("http://:80", "no host"),
            ("http://proxy.example:0", "port \"0\""),
            ("http://proxy.example:65536", "port \"65536\""),
            ("http://[2001:db8::1", "an unclosed ["),
            ("http://[::1]x", "\"x\" after the host"),
        ] {
            assert!(one(value).contains(reason), "{value}: {}", one(value));
        }
    }

    #[test]
    fn credentials_are_decoded_and_never_shown() {
        let proxies = Proxies::from_env(env(&[("HTTP_PROXY", "http://alice:s3cr%40t@p.example")]));
        let proxy = proxies
            .for_uri(&"http://h/".parse().unwrap())
            .unwrap()
            .unwrap();
        // base64("alice:s3cr@t")
        assert_eq!(
            proxy.credentials().map(Credentials::basic).as_deref(),
            Some("Basic YWxpY2U6czNjckB0")
        );
        assert_eq!(proxy.to_string(), "http://***@p.example:3128 (HTTP_PROXY)");
        for shown in [format!("{proxies:?}"), proxies.to_string()] {
            assert!(
                !shown.contains("s3cr") && !shown.contains("alice"),
                "{shown}"
            );
        }
    }

    #[test]
    fn upper_case_decides_first_and_https_falls_back_to_http_proxy() {
        let p = Proxies::from_env(env(&[("HTTP_PROXY", "up:1"), ("http_proxy", "low:2")]));
        assert_eq!(via(&p, "http://h/"), some("up:1"));
        // fetch(3) uses HTTP_PROXY for https:// URLs too.
        assert_eq!(via(&p, "https://h/"), some("up:1"));
        let p = Proxies::from_env(env(&[("http_proxy", "low:2")]));
        assert_eq!(via(&p, "http://h/"), some("low:2"));
        // Set but empty: no proxy, whatever the other case says.
        let p = Proxies::from_env(env(&[("HTTP_PROXY", ""), ("http_proxy", "low:2")]));
        assert_eq!(via(&p, "http://h/"), Ok(None));
        let p = Proxies::from_env(env(&[("HTTP_PROXY", "plain:1"), ("https_proxy", "tls:2")]));
        assert_eq!(via(&p, "http://h/"), some("plain:1"));
        assert_eq!(via(&p, "https://h/"), some("tls:2"));
        let p = Proxies::from_env(env(&[("HTTP_PROXY", "plain:1"), ("HTTPS_PROXY", "")]));
        assert_eq!(via(&p, "https://h/"), Ok(None));
        let p = Proxies::from_env(env(&[("HTTPS_PROXY", "tls:2")]));
        assert_eq!(via(&p, "http://h/"), Ok(None));
        assert_eq!(Proxies::from_env(env(&[])), Proxies::default());
    }

    #[test]
    fn no_proxy_is_a_list_of_host_suffixes() {
        let with =
            |list: &str| Proxies::from_env(env(&[("HTTP_PROXY", "proxy:1"), ("NO_PROXY", list)]));
        let p = with("example.org, .internal\tLOCALHOST,,127.0.0.1 ::1");
        for direct in [
            "http://example.org/",
            "http://images.EXAMPLE.org:8080/",
            "http://a.internal/",
            "http://localhost/",
            "https://127.0.0.1:8443/",
            "http://[::1]:80/",
            // A suffix, not a domain: as libfetch.
            "http://notexample.org/",
        ] {
            assert_eq!(via(&p, direct), Ok(None), "{direct}");
        }
        for proxied in [
            "http://example.com/",
            "http://internal/",
            "http://127.0.0.2/",
        ] {
            assert_eq!(via(&p, proxied), some("proxy:1"), "{proxied}");
        }
        assert_eq!(via(&with("*"), "http://anything/"), Ok(None));
        assert_eq!(via(&with("[::1]"), "http://[::1]/"), Ok(None));
        // Only `*` alone means every host; in a list it is a suffix like any other.
        assert_eq!(via(&with("*, x"), "http://h/"), some("proxy:1"));
        let lower = Proxies::from_env(env(&[("HTTP_PROXY", "proxy:1"), ("no_proxy", "h")]));
        assert_eq!(via(&lower, "http://h/"), Ok(None));
        // A host NO_PROXY names is fetched directly even when the proxy variable is unusable.
        let bad = Proxies::from_env(env(&[("HTTP_PROXY", "ftp://p"), ("NO_PROXY", "h")]));
        assert_eq!(via(&bad, "http://h/"), Ok(None));
        assert!(via(&bad, "http://other/").is_err());
    }

    #[test]
    fn the_log_line_names_each_scheme_s_proxy() {
        let p = Proxies::from_env(env(&[
            ("HTTP_PROXY", "http://alice:s3cret@p:8080"),
            ("NO_PROXY", ".internal,localhost"),
        ]));
        assert_eq!(
            p.to_string(),
            "http:// through http://***@p:8080 (HTTP_PROXY); https:// through http://***@p:8080 (HTTP_PROXY); direct to hosts ending in .internal localhost"
        );
        assert_eq!(
            Proxies::default().to_string(),
            "http:// direct; https:// direct"
        );
    }
}
