//! Small validated values used at the boundary of the machine config. Each one is parsed from
//! its string (or number) form when the YAML is read, so a bad value is reported with its line
//! and column, and the rest of the code only ever sees well-formed values.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::pem;

/// Why one value was refused; the message is shown to the user next to the field's location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(String);

impl InvalidValue {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Deserialises a value through its `TryFrom<String>` inside the scalar's own visitor, so a
/// refused value is reported at the value's line and column with its full field path (going
/// through `#[serde(try_from = "String")]` would report the enclosing mapping instead).
fn deserialize_str<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<String, Error = InvalidValue>,
{
    struct StrVisitor<T>(std::marker::PhantomData<T>);
    impl<T: TryFrom<String, Error = InvalidValue>> Visitor<'_> for StrVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
            T::try_from(value.to_owned()).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(StrVisitor(std::marker::PhantomData))
}

/// Implements the string conversions shared by every string-backed newtype: parsing through
/// `$parse`, `TryFrom<String>` for serde, `From<T> for String`, `FromStr`, `Display` (unless
/// the value is secret) and `as_str`.
macro_rules! string_newtype {
    ($name:ident, $parse:path) => {
        string_newtype!(@common $name, $parse);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
    (secret $name:ident, $parse:path) => {
        string_newtype!(@common $name, $parse);
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<redacted>)", stringify!($name))
            }
        }
    };
    (@common $name:ident, $parse:path) => {
        impl $name {
            /// The value as written in the config (normalised where the type says so).
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, InvalidValue> {
                $parse(value).map(Self)
            }
        }
        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(value: &str) -> Result<Self, InvalidValue> {
                Self::try_from(value.to_owned())
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_str(deserializer)
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Names

/// Checks a DNS name the way Kubernetes checks a DNS-1123 subdomain: lowercase labels of
/// letters, digits and `-`, each 1-63 characters, not starting or ending with `-`, at most 253
/// characters in all.
fn check_dns_name(value: &str) -> Result<(), InvalidValue> {
    if value.is_empty() {
        return Err(InvalidValue::new("must not be empty"));
    }
    if value.len() > 253 {
        return Err(InvalidValue::new(format!(
            "`{value}` is {} characters long; at most 253 are allowed",
            value.len()
        )));
    }
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(InvalidValue::new(format!("`{value}` must be lowercase")));
    }
    for label in value.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(InvalidValue::new(format!(
                "`{value}` has a label of {} characters; each dot-separated part must have 1-63",
                label.len()
            )));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(InvalidValue::new(format!(
                "`{value}` may contain only lowercase letters, digits, `-` and `.`"
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(InvalidValue::new(format!(
                "`{value}`: a part must not start or end with `-`"
            )));
        }
    }
    Ok(())
}

fn parse_dns_name(value: String) -> Result<String, InvalidValue> {
    check_dns_name(&value).map(|()| value)
}

/// A node's hostname, which also becomes its Kubernetes node name (a lowercase DNS name).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct Hostname(String);
string_newtype!(Hostname, parse_dns_name);

/// A lowercase DNS name such as a cluster name or the cluster DNS domain (`cluster.local`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct DnsName(String);
string_newtype!(DnsName, parse_dns_name);

impl DnsName {
    /// `cluster.local`, the default cluster DNS domain.
    pub fn cluster_local() -> Self {
        Self("cluster.local".to_owned())
    }
}

/// A server given by IP address or DNS name, such as an NTP server.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct ServerAddress(String);
string_newtype!(ServerAddress, parse_server_address);

fn parse_server_address(value: String) -> Result<String, InvalidValue> {
    if value.parse::<IpAddr>().is_ok() {
        return Ok(value);
    }
    check_dns_name(&value)
        .map(|()| value)
        .map_err(|e| InvalidValue::new(format!("not an IP address or DNS name: {e}")))
}

/// A container registry host as it appears in image references, with an optional port:
/// `docker.io`, `registry.example.com:5000`, `10.0.2.2:5000`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct RegistryHost(String);
string_newtype!(RegistryHost, parse_registry_host);

fn parse_registry_host(value: String) -> Result<String, InvalidValue> {
    parse_authority(&value)
        .map(|_| value.clone())
        .map_err(|e| InvalidValue::new(format!("registry host `{value}`: {e}")))
}

/// A Linux network interface name (`eth0`, `enp0s3`): 1-15 bytes, no `/`, `:` or whitespace.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct InterfaceName(String);
string_newtype!(InterfaceName, parse_interface_name);

fn parse_interface_name(value: String) -> Result<String, InvalidValue> {
    if value.is_empty() || value.len() > 15 {
        return Err(InvalidValue::new(format!(
            "interface name `{value}` must be 1-15 bytes long"
        )));
    }
    if value == "." || value == ".." {
        return Err(InvalidValue::new(format!(
            "`{value}` is not an interface name"
        )));
    }
    if value
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(InvalidValue::new(format!(
            "interface name `{value}` must not contain `/`, `:` or whitespace"
        )));
    }
    Ok(value)
}

/// An Ethernet MAC address, written `52:54:00:12:34:56`; stored in lowercase.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct MacAddress(String);
string_newtype!(MacAddress, parse_mac);

impl MacAddress {
    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        let mut out = [0; 6];
        for (slot, part) in out.iter_mut().zip(self.0.split(':')) {
            // The value was checked when it was parsed.
            *slot = u8::from_str_radix(part, 16).unwrap_or_default();
        }
        out
    }
}

fn parse_mac(value: String) -> Result<String, InvalidValue> {
    let bad = || {
        InvalidValue::new(format!(
            "`{value}` is not a MAC address; write six hex pairs like `52:54:00:12:34:56`"
        ))
    };
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(bad());
    }
    Ok(value.to_ascii_lowercase())
}

/// A block device path under `/dev`, such as `/dev/vda` or `/dev/disk/by-id/…`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct DevicePath(String);
string_newtype!(DevicePath, parse_device_path);

fn parse_device_path(value: String) -> Result<String, InvalidValue> {
    let Some(rest) = value.strip_prefix("/dev/") else {
        return Err(InvalidValue::new(format!(
            "device path `{value}` must start with `/dev/`"
        )));
    };
    if rest.is_empty()
        || rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(InvalidValue::new(format!(
            "device path `{value}` must name a device under `/dev/` without `.`, `..` or empty parts"
        )));
    }
    Ok(value)
}

/// One extra kernel command-line argument (`console=ttyS0`, `quiet`). Arguments that would
/// take PID 1 away from skiff (`init=`, `rdinit=`) are refused.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct KernelArg(String);
string_newtype!(KernelArg, parse_kernel_arg);

fn parse_kernel_arg(value: String) -> Result<String, InvalidValue> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidValue::new(format!(
            "kernel argument `{value}` must be one non-empty word; list each argument separately"
        )));
    }
    let key = value.split('=').next().unwrap_or_default();
    if key == "init" || key == "rdinit" {
        return Err(InvalidValue::new(format!(
            "kernel argument `{key}=` would replace skiff as PID 1 and is not allowed"
        )));
    }
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// URLs

/// A parsed `host[:port]`.
struct Authority {
    port: Option<u16>,
}

/// Parses `host[:port]` where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn parse_authority(value: &str) -> Result<Authority, String> {
    if value.is_empty() {
        return Err("the host is empty".into());
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs a closing `]`")?;
        inside
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{inside}` is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("expected `:port` after `]`")?,
            ),
        };
        (None, port)
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(value), None),
        }
    };
    if let Some(host) = host {
        if host.contains(':') {
            return Err("write IPv6 addresses in brackets, like `[fd00::1]:6443`".into());
        }
        if host.parse::<std::net::Ipv4Addr>().is_err() {
            check_dns_name(host).map_err(|e| e.to_string())?;
        }
    }
    let port = match port {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => Some(port),
            _ => return Err(format!("`{text}` is not a port number (1-65535)")),
        },
    };
    Ok(Authority { port })
}

/// A parsed `scheme://host[:port][/path]` URL (no user info, query or fragment).
struct Url {
    https: bool,
    port: Option<u16>,
    path: String,
}

fn parse_url(value: &str) -> Result<Url, String> {
    let (https, rest) = if let Some(rest) = value.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = value.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!(
            "`{value}` must start with `https://` (or `http://` where allowed)"
        ));
    };
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!(
            "`{value}` must not contain whitespace, a query or a fragment"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(index) => rest.split_at(index),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(format!("`{value}` must not contain user information"));
    }
    let Authority { port } = parse_authority(authority).map_err(|e| format!("`{value}`: {e}"))?;
    Ok(Url {
        https,
        port,
        path: path.to_owned(),
    })
}

/// The cluster's Kubernetes API endpoint: an `https://host[:port]` URL with no path.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct EndpointUrl(String);
string_newtype!(EndpointUrl, parse_endpoint);

impl EndpointUrl {
    /// The port, 443 when the URL does not name one.
    pub fn port(&self) -> u16 {
        parse_url(&self.0).ok().and_then(|u| u.port).unwrap_or(443)
    }
}

fn parse_endpoint(value: String) -> Result<String, InvalidValue> {
    let url = parse_url(&value).map_err(InvalidValue::new)?;
    if !url.https {
        return Err(InvalidValue::new(format!(
            "API endpoint `{value}` must use https"
        )));
    }
    if !url.path.is_empty() && url.path != "/" {
        return Err(InvalidValue::new(format!(
            "API endpoint `{value}` must not have a path"
        )));
    }
    Ok(value)
}

/// A registry mirror URL: `http://10.0.2.2:5000` or `https://mirror.example.com/prefix`.
/// Plain `http` is only accepted together with `insecure: true` (checked by `validate`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct MirrorUrl(String);
string_newtype!(MirrorUrl, parse_mirror_url);

impl MirrorUrl {
    /// Whether the mirror is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

fn parse_mirror_url(value: String) -> Result<String, InvalidValue> {
    parse_url(&value).map_err(InvalidValue::new)?;
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Addresses

/// An IP prefix in CIDR form, `10.244.0.0/16` or `fd00::/64`. As an interface address it may
/// carry host bits (`10.0.2.15/24`); where a network is meant, `validate` requires them zero.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Builds a prefix, refusing a length longer than the address family allows.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, InvalidValue> {
        if prefix > width(addr) {
            return Err(InvalidValue::new(format!(
                "prefix length /{prefix} is longer than the {}-bit address",
                width(addr)
            )));
        }
        Ok(Self { addr, prefix })
    }

    /// The address as written (possibly with host bits).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether this is an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The prefix with its host bits cleared.
    pub fn network(&self) -> Self {
        let bits = to_bits(self.addr) & mask(width(self.addr), self.prefix);
        Self {
            addr: from_bits(self.addr, bits),
            prefix: self.prefix,
        }
    }

    /// Whether the host bits are all zero, as a network prefix should be written.
    pub fn is_network(&self) -> bool {
        self.network() == *self
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && {
            let m = mask(width(ip), self.prefix);
            to_bits(ip) & m == to_bits(self.addr) & m
        }
    }

    /// Whether the two prefixes share at least one address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let shorter = if self.prefix <= other.prefix {
            self
        } else {
            other
        };
        let longer = if self.prefix <= other.prefix {
            other
        } else {
            self
        };
        shorter.contains(longer.addr)
    }
}

fn width(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn to_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(family: IpAddr, bits: u128) -> IpAddr {
    match family {
        IpAddr::V4(_) => IpAddr::V4(u32::try_from(bits).unwrap_or_default().into()),
        IpAddr::V6(_) => IpAddr::V6(bits.into()),
    }
}

/// The network mask for `prefix` bits of a `width`-bit address, as the low bits of a u128.
fn mask(width: u8, prefix: u8) -> u128 {
    let all = if width >= 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    let host = u32::from(width.saturating_sub(prefix));
    let host_mask = 1u128.checked_shl(host).map_or(u128::MAX, |b| b - 1);
    all & !host_mask
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({self})")
    }
}

impl FromStr for Cidr {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        let bad = |why: &str| InvalidValue::new(format!("`{value}` is not a CIDR: {why}"));
        let (addr, prefix) = value
            .split_once('/')
            .ok_or_else(|| bad("write it as address/prefix, like `10.244.0.0/16`"))?;
        let addr: IpAddr = addr.parse().map_err(|_| bad("the address is not valid"))?;
        let prefix = match prefix.parse::<u8>() {
            Ok(p) if prefix.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(bad("the prefix length is not a number")),
        };
        Self::new(addr, prefix).map_err(|e| bad(&e.0))
    }
}

impl TryFrom<String> for Cidr {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, InvalidValue> {
        value.parse()
    }
}

impl From<Cidr> for String {
    fn from(value: Cidr) -> String {
        value.to_string()
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_str(deserializer)
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// The config's generation: starts at 1 and must never go down on a node, so an old signed
/// config cannot be replayed over a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "u64")]
pub struct Generation(u64);

impl<'de> Deserialize<'de> for Generation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GenerationVisitor;
        impl Visitor<'_> for GenerationVisitor {
            type Value = Generation;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number from 1")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Generation, E> {
                Generation::try_from(value).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Generation, E> {
                let value = u64::try_from(value)
                    .map_err(|_| E::custom(format!("generation {value} is negative")))?;
                self.visit_u64(value)
            }
        }
        deserializer.deserialize_u64(GenerationVisitor)
    }
}

impl Generation {
    /// The generation number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<u64> for Generation {
    type Error = InvalidValue;
    fn try_from(value: u64) -> Result<Self, InvalidValue> {
        if value == 0 {
            return Err(InvalidValue::new("generation starts at 1"));
        }
        Ok(Self(value))
    }
}

impl From<Generation> for u64 {
    fn from(value: Generation) -> u64 {
        value.0
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets and certificates

/// One or more PEM `CERTIFICATE` blocks (a CA certificate or bundle).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct CertificatePem(String);
string_newtype!(CertificatePem, parse_certificate_pem);

fn parse_certificate_pem(value: String) -> Result<String, InvalidValue> {
    let blocks = pem::decode(&value).map_err(InvalidValue::new)?;
    if let Some(other) = blocks.iter().find(|b| b.label != "CERTIFICATE") {
        return Err(InvalidValue::new(format!(
            "expected PEM `CERTIFICATE` blocks, found `{}`",
            other.label
        )));
    }
    Ok(value)
}

/// One PEM private key block (`PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY`). Its
/// `Debug` form never shows the key.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct PrivateKeyPem(String);
string_newtype!(secret PrivateKeyPem, parse_private_key_pem);

fn parse_private_key_pem(value: String) -> Result<String, InvalidValue> {
    let blocks = pem::decode(&value).map_err(InvalidValue::new)?;
    match blocks.as_slice() {
        [one] if one.label.ends_with("PRIVATE KEY") => Ok(value),
        [one] => Err(InvalidValue::new(format!(
            "expected a PEM private key block, found `{}`",
            one.label
        ))),
        _ => Err(InvalidValue::new(format!(
            "expected exactly one PEM private key block, found {}",
            blocks.len()
        ))),
    }
}

/// A Kubernetes bootstrap token, `<6 chars>.<16 chars>` of `[a-z0-9]`. Its `Debug` form only
/// shows the public token id.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct BootstrapToken(String);
string_newtype!(secret BootstrapToken, parse_bootstrap_token);

impl BootstrapToken {
    /// The public half, which names the token's Secret (`bootstrap-token-<id>`).
    pub fn id(&self) -> &str {
        self.0.split('.').next().unwrap_or_default()
    }
}

fn parse_bootstrap_token(value: String) -> Result<String, InvalidValue> {
    let ok = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    match value.split_once('.') {
        Some((id, secret)) if ok(id, 6) && ok(secret, 16) => Ok(value),
        _ => Err(InvalidValue::new(
            "a bootstrap token is 6 and 16 characters of [a-z0-9] joined by `.`, \
             like `abcdef.0123456789abcdef`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_dns_1123() {
        for good in ["cp-1", "node.example.com", "a", "x1"] {
            assert!(good.parse::<Hostname>().is_ok(), "{good}");
        }
        let long_label = "a".repeat(64);
        for (bad, why) in [
            ("", "empty"),
            ("Node1", "lowercase"),
            ("-a", "start or end"),
            ("a..b", "1-63"),
            ("a_b", "only lowercase"),
            (long_label.as_str(), "1-63"),
        ] {
            let err = bad.parse::<Hostname>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn cidrs_parse_and_compare() {
        let pods: Cidr = "10.244.0.0/16".parse().unwrap();
        let services: Cidr = "10.96.0.0/12".parse().unwrap();
        let inside: Cidr = "10.244.3.0/24".parse().unwrap();
        assert!(pods.is_network() && pods.is_ipv4());
        assert!(!pods.overlaps(&services));
        assert!(pods.overlaps(&inside) && inside.overlaps(&pods));
        assert!(pods.contains("10.244.255.1".parse().unwrap()));
        assert!(!pods.contains("10.245.0.1".parse().unwrap()));
        let host: Cidr = "10.0.2.15/24".parse().unwrap();
        assert!(!host.is_network());
        assert_eq!(host.network().to_string(), "10.0.2.0/24");
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.overlaps(&pods) && all.is_network());
        let v6: Cidr = "fd00:10::/64".parse().unwrap();
        assert!(!v6.overlaps(&all) && !v6.contains("10.0.0.1".parse().unwrap()));
        let v6_all: Cidr = "::/0".parse().unwrap();
        assert!(v6_all.contains("fd00::1".parse().unwrap()));
        assert_eq!(
            "fd00::1/64".parse::<Cidr>().unwrap().network().to_string(),
            "fd00::/64"
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0/+8",
            "::/129",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_must_be_https_without_path() {
        let ok: EndpointUrl = "https://10.0.2.15:6443".parse().unwrap();
        assert_eq!(ok.port(), 6443);
        assert_eq!(
            "https://api.example.com"
                .parse::<EndpointUrl>()
                .unwrap()
                .port(),
            443
        );
        assert!("https://[fd00::1]:6443".parse::<EndpointUrl>().is_ok());
        for (bad, why) in [
            ("http://10.0.2.15:6443", "https"),
            ("https://10.0.2.15:6443/api", "path"),
            ("https://10.0.2.15:99999", "port"),
            ("https://fd00::1:6443", "brackets"),
            ("https://user@host", "user"),
            ("10.0.2.15:6443", "https://"),
        ] {
            let err = bad.parse::<EndpointUrl>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn small_values_parse() {
        let mac: MacAddress = "52:54:00:AB:cd:0F".parse().unwrap();
        assert_eq!(mac.as_str(), "52:54:00:ab:cd:0f");
        assert_eq!(mac.octets(), [0x52, 0x54, 0, 0xab, 0xcd, 0x0f]);
        assert!("52:54:00:ab:cd".parse::<MacAddress>().is_err());
        assert!("eth0".parse::<InterfaceName>().is_ok());
        assert!("a-very-long-interface".parse::<InterfaceName>().is_err());
        assert!("/dev/vda".parse::<DevicePath>().is_ok());
        assert!("/dev/../etc/passwd".parse::<DevicePath>().is_err());
        assert!("vda".parse::<DevicePath>().is_err());
        assert!("console=ttyS0".parse::<KernelArg>().is_ok());
        assert!("rdinit=/bin/sh".parse::<KernelArg>().is_err());
        assert!("a b".parse::<KernelArg>().is_err());
        assert!("10.0.2.2:5000".parse::<RegistryHost>().is_ok());
        assert!("docker.io".parse::<RegistryHost>().is_ok());
        assert!("Docker.io".parse::<RegistryHost>().is_err());
        assert!("pool.ntp.org".parse::<ServerAddress>().is_ok());
        assert!("fd00::123".parse::<ServerAddress>().is_ok());
        assert!(Generation::try_from(0).is_err());
        let token: BootstrapToken = "abcdef.0123456789abcdef".parse().unwrap();
        assert_eq!(token.id(), "abcdef");
        assert!(!format!("{token:?}").contains("0123456789abcdef"));
        assert!("abcdef.0123".parse::<BootstrapToken>().is_err());
    }

    #[test]
    fn pem_fields_check_labels() {
        let cert = pem::encode("CERTIFICATE", b"der");
        assert!(cert.parse::<CertificatePem>().is_ok());
        let key = pem::encode("PRIVATE KEY", b"der");
        let err = key.parse::<CertificatePem>().unwrap_err().to_string();
        assert!(err.contains("found `PRIVATE KEY`"), "{err}");
        let parsed: PrivateKeyPem = key.parse().unwrap();
        assert!(!format!("{parsed:?}").contains("BEGIN"));
        assert!(cert.parse::<PrivateKeyPem>().is_err());
    }
}
