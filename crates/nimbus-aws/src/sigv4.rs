//! AWS Signature Version 4 verification for requests signed by AWS SDKs (boto3, the AWS CLI, the
//! JavaScript and Rust SDKs). The server recomputes the signature with the secret of the access
//! key named in the `Authorization` header and compares in constant time.
//!
//! Reference: "Create a signed AWS API request" in the IAM user guide. Only header-based
//! signatures (`Authorization: AWS4-HMAC-SHA256 ...`) are accepted; presigned query strings are not.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

use crate::RawRequest;

type HmacSha256 = Hmac<Sha256>;

/// How far a request's `X-Amz-Date` may be from the server clock, as on AWS.
pub const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Why a request's signature was not accepted. [`SigV4Error::aws_type`] names the AWS error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No `Authorization` header.
    #[error("Missing Authentication Token")]
    Missing,
    /// The header is not a SigV4 header or lacks parts.
    #[error("Authorization header is malformed: {0}")]
    Malformed(String),
    /// The access key id is not one Nimbus issued.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// `X-Amz-Date` is too far from the server clock.
    #[error("Signature expired: {0} is more than 15 minutes from the server time")]
    Expired(String),
    /// The signature does not match.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method."
    )]
    Mismatch,
    /// The credential is scoped to another service or region.
    #[error("Credential should be scoped to {0}")]
    Scope(String),
    /// `x-amz-content-sha256` is not the hash of the body received.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    PayloadHash,
    /// The payload was not signed where this service needs it signed.
    #[error("UNSIGNED-PAYLOAD is not accepted by this service: sign the payload")]
    UnsignedPayload,
    /// An `x-amz-*` header that is not in `SignedHeaders`.
    #[error("the header `{0}` must be signed (add it to SignedHeaders)")]
    UnsignedHeader(String),
}

impl SigV4Error {
    /// The AWS error type SDKs recognise (`x-amzn-ErrorType`).
    pub fn aws_type(&self) -> &'static str {
        match self {
            SigV4Error::Missing => "MissingAuthenticationTokenException",
            SigV4Error::Malformed(_) => "IncompleteSignatureException",
            SigV4Error::UnknownKey => "UnrecognizedClientException",
            SigV4Error::Expired(_)
            | SigV4Error::Mismatch
            | SigV4Error::Scope(_)
            | SigV4Error::PayloadHash
            | SigV4Error::UnsignedPayload
            | SigV4Error::UnsignedHeader(_) => "InvalidSignatureException",
        }
    }
}

/// What a request must be signed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    /// The service in the credential scope (`lambda`).
    pub service: &'a str,
    /// The region in the credential scope (the node's).
    pub region: &'a str,
    /// Whether `x-amz-content-sha256: UNSIGNED-PAYLOAD` is allowed (S3 only, on AWS).
    pub unsigned_payload: bool,
}

/// `x-amz-content-sha256` value of a payload that is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authorization {
    access_key: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: Vec<u8>,
}

fn parse_authorization(value: &str) -> Result<Authorization, SigV4Error> {
    let malformed = |m: &str| SigV4Error::Malformed(m.to_string());
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| malformed("expected the AWS4-HMAC-SHA256 algorithm"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| malformed("missing Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(malformed(
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    let signed_headers: Vec<String> = signed
        .ok_or_else(|| malformed("missing SignedHeaders"))?
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(malformed("SignedHeaders must include host"));
    }
    let signature = hex::decode(signature.ok_or_else(|| malformed("missing Signature"))?)
        .map_err(|_| malformed("Signature is not hex"))?;
    Ok(Authorization {
        access_key: access_key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers,
        signature,
    })
}

fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let enc = |s: &str| {
                let decoded = percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned();
                utf8_percent_encode(&decoded, UNRESERVED).to_string()
            };
            (enc(k), enc(v))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_header_value(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn canonical_request(
    req: &RawRequest<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let path = if req.raw_path.is_empty() {
        "/"
    } else {
        req.raw_path
    };
    let headers: String = signed_headers
        .iter()
        .map(|h| format!("{h}:{}\n", canonical_header_value(req.headers, h)))
        .collect();
    format!(
        "{}\n{}\n{}\n{headers}\n{}\n{payload_hash}",
        req.method,
        utf8_percent_encode(path, UNRESERVED_AND_SLASH),
        canonical_query(req.raw_query),
        signed_headers.join(";"),
    )
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Parses `X-Amz-Date` (`20150830T123600Z`) to unix seconds.
fn parse_amz_date(s: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    Some(
        time::PrimitiveDateTime::parse(s, format)
            .ok()?
            .assume_utc()
            .unix_timestamp(),
    )
}

/// The payload hash the canonical request uses: the hash of the body received, which a
/// declared `x-amz-content-sha256` must equal (or be `UNSIGNED-PAYLOAD`, where allowed).
fn payload_hash(req: &RawRequest<'_>, scope: &Scope<'_>) -> Result<String, SigV4Error> {
    let actual = hex::encode(Sha256::digest(req.body));
    match req.headers.get("x-amz-content-sha256").map(|v| v.to_str()) {
        None => Ok(actual),
        Some(Ok(UNSIGNED_PAYLOAD)) if scope.unsigned_payload => Ok(UNSIGNED_PAYLOAD.to_string()),
        Some(Ok(UNSIGNED_PAYLOAD)) => Err(SigV4Error::UnsignedPayload),
        Some(Ok(declared)) if declared.eq_ignore_ascii_case(&actual) => Ok(declared.to_string()),
        Some(_) => Err(SigV4Error::PayloadHash),
    }
}

/// Verifies `req`'s signature for `scope`: the credential's service and region, the body
/// against its declared hash, every `x-amz-*` header signed. `secret_for` returns the secret
/// of an access key id Nimbus issued; `now_unix` is the server time. Returns the access key
/// id on success.
pub fn verify(
    req: &RawRequest<'_>,
    scope: Scope<'_>,
    secret_for: impl FnOnce(&str) -> Option<String>,
    now_unix: i64,
) -> Result<String, SigV4Error> {
    let header = req
        .headers
        .get(http::header::AUTHORIZATION)
        .ok_or(SigV4Error::Missing)?
        .to_str()
        .map_err(|_| SigV4Error::Malformed("not ASCII".into()))?;
    let auth = parse_authorization(header)?;
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SigV4Error::Malformed("missing X-Amz-Date".into()))?;
    let when = parse_amz_date(amz_date)
        .ok_or_else(|| SigV4Error::Malformed(format!("bad X-Amz-Date `{amz_date}`")))?;
    if !amz_date.starts_with(&auth.date) {
        return Err(SigV4Error::Malformed(
            "credential date does not match X-Amz-Date".into(),
        ));
    }
    if auth.service != scope.service {
        return Err(SigV4Error::Scope(format!(
            "the correct service: '{}', not '{}'",
            scope.service, auth.service
        )));
    }
    if auth.region != scope.region {
        return Err(SigV4Error::Scope(format!(
            "a valid region: '{}', not '{}'",
            scope.region, auth.region
        )));
    }
    if let Some(name) = req
        .headers
        .keys()
        .map(|k| k.as_str())
        .find(|k| k.starts_with("x-amz-") && !auth.signed_headers.iter().any(|h| h == k))
    {
        return Err(SigV4Error::UnsignedHeader(name.to_string()));
    }
    let payload_hash = payload_hash(req, &scope)?;
    let secret = secret_for(&auth.access_key).ok_or(SigV4Error::UnknownKey)?;
    if (now_unix - when).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(SigV4Error::Expired(amz_date.to_string()));
    }
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(
            canonical_request(req, &auth.signed_headers, &payload_hash).as_bytes()
        ))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), &auth.date);
    for part in [auth.region.as_str(), auth.service.as_str(), "aws4_request"] {
        key = hmac(&key, part);
    }
    let mut mac = HmacSha256::new_from_slice(&key).unwrap_or_else(|_| unreachable!());
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&auth.signature)
        .map_err(|_| SigV4Error::Mismatch)?;
    Ok(auth.access_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    // The worked example of the IAM user guide (GET ListUsers, 2015-08-30).
    const SIGNATURE: &str = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    fn headers(signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("iam.amazonaws.com"));
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
            ))
            .unwrap(),
        );
        h
    }

    fn request(h: &HeaderMap) -> RawRequest<'_> {
        RawRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "Action=ListUsers&Version=2010-05-08",
            headers: h,
            body: b"",
        }
    }

    const IAM: Scope<'static> = Scope {
        service: "iam",
        region: "us-east-1",
        unsigned_payload: false,
    };

    fn now() -> i64 {
        parse_amz_date("20150830T123600Z").unwrap() + 60
    }

    fn secret(key: &str) -> Option<String> {
        (key == "AKIDEXAMPLE").then(|| SECRET.to_string())
    }

    #[test]
    fn accepts_the_documented_example() {
        let h = headers(SIGNATURE);
        assert_eq!(
            verify(&request(&h), IAM, secret, now()).unwrap(),
            "AKIDEXAMPLE"
        );
    }

    #[test]
    fn rejects_tampering_wrong_secrets_unknown_keys_and_old_requests() {
        let h = headers(SIGNATURE);
        let mut tampered = request(&h);
        tampered.raw_query = "Action=DeleteUsers&Version=2010-05-08";
        assert_eq!(
            verify(&tampered, IAM, secret, now()),
            Err(SigV4Error::Mismatch)
        );
        let mut body = request(&h);
        body.body = b"x";
        assert_eq!(verify(&body, IAM, secret, now()), Err(SigV4Error::Mismatch));
        assert_eq!(
            verify(&request(&h), IAM, |_| Some("other".into()), now()),
            Err(SigV4Error::Mismatch)
        );
        assert_eq!(
            verify(&request(&h), IAM, |_| None, now()),
            Err(SigV4Error::UnknownKey)
        );
        assert!(matches!(
            verify(&request(&h), IAM, secret, now() + 3600),
            Err(SigV4Error::Expired(_))
        ));
        let bad = headers(&"0".repeat(64));
        assert_eq!(
            verify(&request(&bad), IAM, secret, now()),
            Err(SigV4Error::Mismatch)
        );
    }

    #[test]
    fn the_scope_the_payload_hash_and_amz_headers_are_checked() {
        let h = headers(SIGNATURE);
        let lambda = Scope {
            service: "lambda",
            ..IAM
        };
        assert!(matches!(
            verify(&request(&h), lambda, secret, now()),
            Err(SigV4Error::Scope(m)) if m.contains("'lambda'")
        ));
        let elsewhere = Scope {
            region: "eu-west-1",
            ..IAM
        };
        assert!(matches!(
            verify(&request(&h), elsewhere, secret, now()),
            Err(SigV4Error::Scope(_))
        ));
        // A declared hash is checked against the body (whatever the signature says).
        let mut declared = headers(SIGNATURE);
        declared.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static(
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        );
        let mut swapped = request(&declared);
        swapped.body = b"swapped after signing";
        assert!(matches!(
            verify(&swapped, IAM, secret, now()),
            Err(SigV4Error::UnsignedHeader(_) | SigV4Error::PayloadHash)
        ));
        let mut unsigned = headers(SIGNATURE);
        unsigned.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static(UNSIGNED_PAYLOAD),
        );
        // Unsigned here twice over: the header is not in SignedHeaders, and the payload.
        assert!(verify(&request(&unsigned), IAM, secret, now()).is_err());
        assert_eq!(
            payload_hash(&request(&unsigned), &IAM),
            Err(SigV4Error::UnsignedPayload)
        );
        let s3 = Scope {
            unsigned_payload: true,
            ..IAM
        };
        assert_eq!(
            payload_hash(&request(&unsigned), &s3).as_deref(),
            Ok(UNSIGNED_PAYLOAD)
        );
        let mut extra = headers(SIGNATURE);
        extra.insert("x-amz-invocation-type", HeaderValue::from_static("Event"));
        assert_eq!(
            verify(&request(&extra), IAM, secret, now()),
            Err(SigV4Error::UnsignedHeader("x-amz-invocation-type".into()))
        );
    }

    #[test]
    fn malformed_headers_say_what_is_wrong() {
        let mut h = headers(SIGNATURE);
        h.remove("authorization");
        assert_eq!(
            verify(&request(&h), IAM, secret, now()),
            Err(SigV4Error::Missing)
        );
        for value in [
            "Basic abc",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=x-amz-date, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=zz",
        ] {
            h.insert("authorization", HeaderValue::from_str(value).unwrap());
            let err = verify(&request(&h), IAM, secret, now()).unwrap_err();
            assert_eq!(err.aws_type(), "IncompleteSignatureException", "{value}");
        }
    }

    #[test]
    fn canonical_query_sorts_and_reencodes() {
        assert_eq!(canonical_query("b=2&a=x%20y&a=1&c"), "a=1&a=x%20y&b=2&c=");
        assert_eq!(
            canonical_query("Qualifier=%24LATEST"),
            "Qualifier=%24LATEST"
        );
        assert_eq!(canonical_query(""), "");
    }
}
