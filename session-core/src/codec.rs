//! Every binary framing of the workspace, in one place, each with its round trip and its
//! refusal of corrupt input:
//!
//! - [`record`]: a whole [`Record`] as one byte string, `[version u64 BE][expiry ms i64 BE][data]`,
//!   for stores that keep a record in one value (Redis values, the tiered front's entries).
//! - [`envelope`]: what the front stores as a record's data, `[format 1][absolute deadline ms
//!   i64 BE, or i64::MIN for none][data]`. Public so that adapters writing the same stores (the
//!   tower-sessions and actix-session adapters) store sessions in the same shape.
//!
//! Big-endian integers, so a byte-wise comparison of headers orders them as numbers (the Redis
//! scripts compare the version that way).

use bytes::Bytes;
use time::OffsetDateTime;

use crate::error::{Error, ErrorKind, Result};
use crate::store::{Record, from_unix_millis, unix_millis};

/// `[version u64 BE][expiry ms i64 BE][data]`: a record as one value.
pub mod record {
    use super::*;

    /// Bytes before the data.
    pub const HEADER: usize = 16;

    /// The header of a record with `version` expiring at `expires_at` (milliseconds kept).
    pub fn header(version: u64, expires_at: OffsetDateTime) -> [u8; HEADER] {
        let mut header = [0; HEADER];
        header[..8].copy_from_slice(&version.to_be_bytes());
        header[8..].copy_from_slice(&unix_millis(expires_at).to_be_bytes());
        header
    }

    /// The framed record.
    pub fn encode(version: u64, expires_at: OffsetDateTime, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + data.len());
        out.extend_from_slice(&header(version, expires_at));
        out.extend_from_slice(data);
        out
    }

    /// The record framed in `bytes` (its data shares their buffer); [`ErrorKind::Decode`] when
    /// they are shorter than a header or the expiry is not a representable time.
    pub fn decode(bytes: impl Into<Bytes>) -> Result<Record> {
        let mut bytes = bytes.into();
        if bytes.len() < HEADER {
            return Err(Error::new(
                ErrorKind::Decode,
                "stored bytes are not a framed record (shorter than its header)",
            ));
        }
        let version = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let millis = i64::from_be_bytes(bytes[8..HEADER].try_into().expect("8 bytes"));
        let expires_at = from_unix_millis(millis).ok_or_else(|| {
            Error::new(
                ErrorKind::Decode,
                "a framed record's expiry is out of range",
            )
        })?;
        Ok(Record {
            data: bytes.split_off(HEADER),
            expires_at,
            version,
        })
    }
}

/// `[format 1][absolute deadline ms i64 BE, i64::MIN for none][data]`: a session's data as the
/// front stores it.
pub mod envelope {
    use super::*;

    const FORMAT: u8 = 1;
    const NO_DEADLINE: i64 = i64::MIN;
    /// Bytes before the data.
    pub const HEADER: usize = 9;

    /// [`ErrorKind::TooLarge`] when `data` is larger than `limit` bytes (the check every writer
    /// of sessions applies before storing, `SessionManager::with_max_data_size`).
    pub fn check_size(data: &[u8], limit: usize) -> Result<()> {
        if data.len() > limit {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("session data is {} bytes, the limit is {limit}", data.len()),
            ));
        }
        Ok(())
    }

    /// The stored form of `data` with `absolute_deadline`.
    pub fn encode(absolute_deadline: Option<OffsetDateTime>, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + data.len());
        out.push(FORMAT);
        out.extend_from_slice(
            &absolute_deadline
                .map_or(NO_DEADLINE, unix_millis)
                .to_be_bytes(),
        );
        out.extend_from_slice(data);
        out
    }

    /// The absolute deadline and the data of a stored session; [`ErrorKind::Decode`] when the
    /// bytes are not in this format.
    pub fn decode(stored: Bytes) -> Result<(Option<OffsetDateTime>, Bytes)> {
        if stored.len() < HEADER || stored[0] != FORMAT {
            return Err(Error::new(
                ErrorKind::Decode,
                "stored session is not in the session envelope format",
            ));
        }
        let millis = i64::from_be_bytes(stored[1..HEADER].try_into().expect("8 bytes"));
        let deadline = match millis {
            NO_DEADLINE => None,
            millis => Some(from_unix_millis(millis).ok_or_else(|| {
                Error::new(
                    ErrorKind::Decode,
                    "stored absolute deadline is out of range",
                )
            })?),
        };
        Ok((deadline, stored.slice(HEADER..)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::truncate_to_millis;

    fn at(millis: i64) -> OffsetDateTime {
        from_unix_millis(millis).unwrap()
    }

    #[test]
    fn records_round_trip() {
        let long = vec![0xa5; 70_000];
        for (version, millis, data) in [
            (1, 1_700_000_000_123, &b""[..]),
            (u64::MAX, -1, &b"\0\0 trailing\0"[..]),
            (42, i64::from(i32::MAX) * 1_000, &long[..]),
        ] {
            let framed = record::encode(version, at(millis), data);
            assert_eq!(framed.len(), record::HEADER + data.len());
            assert_eq!(
                &framed[..record::HEADER],
                &record::header(version, at(millis))
            );
            let back = record::decode(framed).unwrap();
            assert_eq!(
                (back.version, back.expires_at, &back.data[..]),
                (version, at(millis), data)
            );
        }
        let now = OffsetDateTime::now_utc();
        let back = record::decode(record::encode(3, now, b"x")).unwrap();
        assert_eq!(back.expires_at, truncate_to_millis(now));
    }

    #[test]
    fn corrupt_records_are_decode_errors() {
        for bad in [
            Vec::new(),
            vec![0; record::HEADER - 1],
            [&1u64.to_be_bytes()[..], &i64::MAX.to_be_bytes()[..]].concat(),
        ] {
            assert_eq!(
                record::decode(bad.clone()).unwrap_err().kind(),
                ErrorKind::Decode,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn envelopes_round_trip_and_refuse_garbage() {
        for deadline in [None, Some(at(1_700_000_000_999)), Some(at(-5))] {
            let stored = envelope::encode(deadline, b"{\"a\":1}");
            let (back, data) = envelope::decode(Bytes::from(stored)).unwrap();
            assert_eq!((back, &data[..]), (deadline, &b"{\"a\":1}"[..]));
        }
        let mut wrong_format = envelope::encode(None, b"x");
        wrong_format[0] = 2;
        let mut out_of_range = vec![1];
        out_of_range.extend_from_slice(&i64::MAX.to_be_bytes());
        for bad in [Vec::new(), vec![1; 8], wrong_format, out_of_range] {
            assert_eq!(
                envelope::decode(Bytes::from(bad.clone()))
                    .unwrap_err()
                    .kind(),
                ErrorKind::Decode,
                "{bad:?}"
            );
        }
        assert_eq!(
            envelope::check_size(&[0; 11], 10).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
        envelope::check_size(&[0; 10], 10).unwrap();
    }
}
