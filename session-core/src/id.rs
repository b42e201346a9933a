//! Session identifiers: the token a client holds and the key a store sees.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind};

/// Number of random bytes in a [`SessionId`].
pub const ID_BYTES: usize = 32;
/// Length of the textual (base64url, unpadded) form of a [`SessionId`].
pub const ID_LEN: usize = 43;
/// How many characters of a token or key `Debug`/`Display` reveal.
const SHOWN_PREFIX: usize = 6;

/// The token a client holds (in a cookie): 32 bytes from the OS CSPRNG.
///
/// Its text form is 43 characters of unpadded base64url. [`SessionId::parse`] accepts exactly
/// that form and nothing else. `Debug` and `Display` print a short prefix only, so a token never
/// lands whole in a log; use [`SessionId::expose`] for the cookie value.
///
/// Stores never see a `SessionId`: they get its [`SessionKey`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// Mints a fresh id from the operating system's CSPRNG.
    ///
    /// The OS is asked for the bytes of 32 ids at a time (one `getrandom` call instead of one
    /// per id: a third of a small session's create, measured); each thread keeps its unused
    /// bytes, hands each out once and wipes them, and refills after a `fork` (the child never
    /// reuses the parent's bytes).
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide random bytes: continuing with a predictable
    /// token would be worse than stopping.
    pub fn generate() -> Self {
        Self(random::take())
    }

    /// Parses the text form strictly: 43 characters of unpadded base64url, canonical encoding.
    ///
    /// Anything else (another length, padding, whitespace, other alphabets, non-ASCII) is
    /// [`ErrorKind::InvalidId`]. The error never echoes the input.
    pub fn parse(text: &str) -> Result<Self, Error> {
        // Checking the length first keeps hostile megabyte-long cookies cheap.
        if text.len() != ID_LEN {
            return Err(Error::new(
                ErrorKind::InvalidId,
                "session id must be 43 characters of base64url",
            ));
        }
        let mut bytes = [0u8; ID_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut bytes) {
            Ok(ID_BYTES) => Ok(Self(bytes)),
            Ok(_) => Err(Error::new(
                ErrorKind::InvalidId,
                "session id does not decode to 32 bytes",
            )),
            Err(source) => Err(Error::with_source(
                ErrorKind::InvalidId,
                "session id is not canonical base64url",
                source,
            )),
        }
    }

    /// The whole token, for the cookie value. Never log it.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The key stores use for this id: `SHA-256(token bytes)`.
    pub fn key(&self) -> SessionKey {
        SessionKey(Sha256::digest(self.0).into())
    }
}

/// A per-thread buffer of OS randomness for ids.
mod random {
    use std::cell::RefCell;

    use super::ID_BYTES;

    /// Ids per `getrandom` call.
    const IDS_PER_FILL: usize = 32;

    struct Buffer {
        bytes: [u8; ID_BYTES * IDS_PER_FILL],
        /// Bytes from here on are unused.
        next: usize,
        /// The process that filled the buffer: a forked child must not reuse the parent's bytes.
        pid: u32,
    }

    thread_local! {
        static BUFFER: RefCell<Buffer> = const {
            RefCell::new(Buffer {
                bytes: [0; ID_BYTES * IDS_PER_FILL],
                next: ID_BYTES * IDS_PER_FILL,
                pid: 0,
            })
        };
    }

    /// 32 fresh random bytes, never handed out before.
    pub(super) fn take() -> [u8; ID_BYTES] {
        BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            let pid = std::process::id();
            if buffer.next == buffer.bytes.len() || buffer.pid != pid {
                getrandom::fill(&mut buffer.bytes).expect("the OS random number generator failed");
                buffer.next = 0;
                buffer.pid = pid;
            }
            let start = buffer.next;
            let mut out = [0u8; ID_BYTES];
            out.copy_from_slice(&buffer.bytes[start..start + ID_BYTES]);
            buffer.bytes[start..start + ID_BYTES].fill(0);
            buffer.next = start + ID_BYTES;
            out
        })
    }
}

impl FromStr for SessionId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::parse(text)
    }
}

/// Serialized as the whole token (for resumable state such as a front's snapshot of a session):
/// treat serialized output as a secret. Feature `serde`.
#[cfg(feature = "serde")]
impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expose())
    }
}

/// Deserialized with [`SessionId::parse`]'s strict rules. Feature `serde`.
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.expose();
        write!(f, "{}…", &text[..SHOWN_PREFIX])
    }
}

/// What a store sees of a session: `SHA-256` of the token's bytes.
///
/// A dump of a store's keys cannot be replayed as cookies. The only ways to get one are
/// [`SessionId::key`] and, for stores reading their own keys back, [`SessionKey::from_bytes`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// Rebuilds a key that a store had written (for example a primary key read back from a
    /// table). Any length other than 32 bytes is [`ErrorKind::Decode`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| Error::new(ErrorKind::Decode, "a stored session key is not 32 bytes"))
    }

    /// The 32 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as 64 lowercase hex characters (handy for key-value stores' key names).
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({self})")
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.to_hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_ids_are_distinct_across_refills_and_threads() {
        use std::collections::HashSet;
        // 4 threads x 1,000 ids: each thread refills its buffer about 31 times.
        let ids: Vec<[u8; ID_BYTES]> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        (0..1000)
                            .map(|_| SessionId::generate().0)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert_eq!(ids.len(), 4000);
        assert!(
            ids.iter().all(|id| id != &[0u8; ID_BYTES]),
            "a wiped slot was handed out"
        );
        let distinct: HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "an id was handed out twice");
        // Every byte value shows up: the bytes are random, not a counter or a constant.
        let seen: HashSet<u8> = ids.iter().flatten().copied().collect();
        assert_eq!(seen.len(), 256);
    }

    #[test]
    fn generated_ids_round_trip_and_differ() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        let text = a.expose();
        assert_eq!(text.len(), ID_LEN);
        assert_eq!(SessionId::parse(&text).unwrap(), a);
        assert_eq!(text.parse::<SessionId>().unwrap().key(), a.key());
    }

    #[test]
    fn malformed_ids_are_rejected() {
        let good = SessionId::generate().expose();
        let huge = "A".repeat(10 * 1024 * 1024);
        let mut bad: Vec<String> = vec![
            String::new(),
            good[..42].to_owned(),
            format!("{good}A"),
            format!("{good}="),
            format!(" {}", &good[1..]),
            format!("{}\n", &good[..42]),
            format!("{}+", &good[..42]),
            format!("{}/", &good[..42]),
            format!("{}é", &good[..41]),
            huge,
        ];
        // A final character whose unused low bits are set is not the canonical encoding.
        bad.push(format!("{}B", &"A".repeat(42)));
        for text in &bad {
            let err = SessionId::parse(text).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidId,
                "accepted {:?}",
                &text[..text.len().min(50)]
            );
            assert!(!err.to_string().contains(&good), "error echoes the token");
        }
        assert!(SessionId::parse(&format!("{}A", &"A".repeat(42))).is_ok());
    }

    #[test]
    fn debug_and_display_hide_the_token() {
        let id = SessionId::generate();
        let text = id.expose();
        for shown in [
            format!("{id}"),
            format!("{id:?}"),
            format!("{:?}", id.key()),
            id.key().to_string(),
        ] {
            assert!(!shown.contains(&text), "{shown}");
            assert!(shown.len() < 24, "{shown}");
        }
        assert!(format!("{id}").starts_with(&text[..6]));
    }

    #[test]
    fn key_is_sha256_of_the_token_bytes() {
        let id = SessionId::parse(&"A".repeat(43)).unwrap();
        // SHA-256 of 32 zero bytes.
        assert_eq!(
            id.key().to_hex(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert_eq!(
            SessionKey::from_bytes(id.key().as_bytes()).unwrap(),
            id.key()
        );
        assert_eq!(
            SessionKey::from_bytes(&[0; 31]).unwrap_err().kind(),
            ErrorKind::Decode
        );
    }
}
