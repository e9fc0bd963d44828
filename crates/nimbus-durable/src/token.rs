//! Checkpoint tokens and callback ids: opaque to clients, checked by the node.
//!
//! A checkpoint token names its execution and the journal's token sequence number; a callback
//! id names its execution and operation, so the callback API finds the execution from the id
//! alone. Both carry an HMAC-SHA256 tag under the node's secret: a client cannot forge one, nor
//! move one to another execution.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Bytes of the tag kept (128 bits).
const TAG_BYTES: usize = 16;

/// A token or id that this node did not issue, or that names something else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not valid")]
pub struct InvalidToken(&'static str);

fn tag(secret: &[u8], kind: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(kind);
    mac.update(b"\0");
    mac.update(body);
    mac.finalize().into_bytes()[..TAG_BYTES].to_vec()
}

fn seal(secret: &[u8], kind: &[u8], body: &[u8]) -> String {
    let mut bytes = body.to_vec();
    bytes.extend_from_slice(&tag(secret, kind, body));
    URL_SAFE_NO_PAD.encode(bytes)
}

fn open(
    secret: &[u8],
    kind: &'static [u8],
    text: &str,
    what: &'static str,
) -> Result<Vec<u8>, InvalidToken> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| InvalidToken(what))?;
    if bytes.len() < TAG_BYTES {
        return Err(InvalidToken(what));
    }
    let (body, given) = bytes.split_at(bytes.len() - TAG_BYTES);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(kind);
    mac.update(b"\0");
    mac.update(body);
    // Constant-time comparison of the truncated tag.
    mac.verify_truncated_left(given)
        .map_err(|_| InvalidToken(what))?;
    Ok(body.to_vec())
}

/// The checkpoint token of execution `arn` at sequence number `seq`.
pub fn checkpoint_token(secret: &[u8], arn: &str, seq: u64) -> String {
    let mut body = seq.to_be_bytes().to_vec();
    body.extend_from_slice(arn.as_bytes());
    seal(secret, b"checkpoint", &body)
}

/// The sequence number a checkpoint token for execution `arn` carries.
pub fn checkpoint_seq(secret: &[u8], arn: &str, token: &str) -> Result<u64, InvalidToken> {
    const WHAT: &str = "the checkpoint token";
    let body = open(secret, b"checkpoint", token, WHAT)?;
    let (seq, named) = body.split_at_checked(8).ok_or(InvalidToken(WHAT))?;
    if named != arn.as_bytes() {
        return Err(InvalidToken(WHAT));
    }
    let seq: [u8; 8] = seq.try_into().map_err(|_| InvalidToken(WHAT))?;
    Ok(u64::from_be_bytes(seq))
}

/// A durable function's own AWS credentials in tenant `tenant` (access key id, secret):
/// the id names the tenant and function; the secret is an HMAC of them under `secret`.
pub fn execution_credentials(secret: &[u8], tenant: &str, function: &str) -> (String, String) {
    let body = format!("{tenant}\0{function}");
    let id = format!("{EXECUTION_KEY_PREFIX}{}", hex_upper(body.as_bytes()));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"execution-credentials\0");
    mac.update(body.as_bytes());
    (id, hex_upper(&mac.finalize().into_bytes()))
}

/// How a durable function's access key id begins.
pub const EXECUTION_KEY_PREFIX: &str = "NXDE";

/// The tenant and function an execution access key id names (not yet proof of anything).
pub fn execution_key_owner(access_key_id: &str) -> Option<(String, String)> {
    let hex = access_key_id.strip_prefix(EXECUTION_KEY_PREFIX)?;
    if hex.len() % 2 != 0 || hex.len() > 512 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let text = String::from_utf8(bytes).ok()?;
    let (tenant, function) = text.split_once('\0')?;
    Some((tenant.to_string(), function.to_string()))
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The trace every handler invocation of execution `arn` continues (a W3C trace id and a
/// parent span id, both from a hash of the ARN): one trace shows the whole execution.
pub fn execution_trace(arn: &str) -> ([u8; 16], [u8; 8]) {
    let digest = Sha256::digest(arn.as_bytes());
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    trace.copy_from_slice(&digest[..16]);
    span.copy_from_slice(&digest[16..24]);
    // Never all zeros (an invalid id): vanishingly unlikely, but cheap to rule out.
    trace[15] |= 1;
    span[7] |= 1;
    (trace, span)
}

/// The token of `arn`'s public status resource (the async HTTP pattern's capability).
pub fn status_token(secret: &[u8], arn: &str) -> String {
    seal(secret, b"status", arn.as_bytes())
}

/// The execution ARN a status token names.
pub fn status_target(secret: &[u8], token: &str) -> Result<String, InvalidToken> {
    const WHAT: &str = "the status token";
    let body = open(secret, b"status", token, WHAT)?;
    String::from_utf8(body).map_err(|_| InvalidToken(WHAT))
}

/// The callback id of operation `operation` of execution `arn`.
pub fn callback_id(secret: &[u8], arn: &str, operation: &str) -> String {
    let body = format!("{arn}\0{operation}");
    seal(secret, b"callback", body.as_bytes())
}

/// The execution ARN and operation id a callback id names.
pub fn callback_target(secret: &[u8], id: &str) -> Result<(String, String), InvalidToken> {
    const WHAT: &str = "the callback id";
    let body = open(secret, b"callback", id, WHAT)?;
    let text = String::from_utf8(body).map_err(|_| InvalidToken(WHAT))?;
    let (arn, op) = text.split_once('\0').ok_or(InvalidToken(WHAT))?;
    Ok((arn.to_string(), op.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &[u8] = b"node secret";

    #[test]
    fn an_execution_has_one_valid_trace_of_its_own() {
        let (trace, span) = execution_trace("arn:a");
        assert_eq!(execution_trace("arn:a"), (trace, span));
        assert_ne!(execution_trace("arn:b").0, trace);
        assert!(trace.iter().any(|b| *b != 0) && span.iter().any(|b| *b != 0));
    }

    #[test]
    fn status_tokens_name_their_execution_and_are_not_callback_ids() {
        let t = status_token(KEY, "arn:x");
        assert_eq!(status_target(KEY, &t), Ok("arn:x".to_string()));
        assert!(status_target(b"other", &t).is_err());
        assert!(
            callback_target(KEY, &t).is_err(),
            "a status token is no callback id"
        );
        assert!(status_target(KEY, &callback_id(KEY, "arn:x", "op")).is_err());
    }

    #[test]
    fn execution_credentials_name_their_function_and_differ_per_function_and_secret() {
        let (id, secret) = execution_credentials(KEY, "default", "order-flow");
        assert!(id.starts_with(EXECUTION_KEY_PREFIX));
        assert_eq!(
            execution_key_owner(&id),
            Some(("default".into(), "order-flow".into()))
        );
        assert_ne!(secret, execution_credentials(KEY, "default", "other").1);
        assert_ne!(secret, execution_credentials(KEY, "acme", "order-flow").1);
        assert_ne!(
            secret,
            execution_credentials(b"another", "default", "order-flow").1
        );
        for bad in ["AKIA1234", "NXDE4", "NXDEZZ", "NXDE6162"] {
            assert_eq!(execution_key_owner(bad), None, "{bad}");
        }
    }
    const ARN: &str =
        "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST/durable-execution/n/1";

    #[test]
    fn checkpoint_tokens_round_trip_and_bind_to_their_execution() {
        let t = checkpoint_token(KEY, ARN, 42);
        assert_eq!(checkpoint_seq(KEY, ARN, &t), Ok(42));
        assert!(
            checkpoint_seq(KEY, "arn:other", &t).is_err(),
            "another execution's"
        );
        assert!(
            checkpoint_seq(b"other key", ARN, &t).is_err(),
            "another node's"
        );
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        // A flipped character, a truncation, garbage: refused, never a panic.
        let mut flipped = t.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        for bad in [
            String::from_utf8(flipped).unwrap(),
            t[..t.len() - 2].to_string(),
            "".into(),
            "!!".into(),
        ] {
            assert!(checkpoint_seq(KEY, ARN, &bad).is_err(), "{bad}");
        }
        // A callback id is not a checkpoint token.
        assert!(checkpoint_seq(KEY, ARN, &callback_id(KEY, ARN, "op")).is_err());
    }

    #[test]
    fn callback_ids_name_their_execution_and_operation() {
        let id = callback_id(KEY, ARN, "c4ca4238");
        assert_eq!(
            callback_target(KEY, &id),
            Ok((ARN.to_string(), "c4ca4238".to_string()))
        );
        assert!(callback_target(b"other key", &id).is_err());
        assert!(callback_target(KEY, &checkpoint_token(KEY, ARN, 1)).is_err());
        assert!(callback_target(KEY, "not-an-id").is_err());
    }
}
