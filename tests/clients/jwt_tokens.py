"""Issues the keys and tokens of the route-access tests with PyJWT and cryptography (an
independent JWT implementation): prints JSON with two key sets and named tokens.

usage: jwt_tokens.py ISSUER AUDIENCE
"""
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

issuer, audience = sys.argv[1], sys.argv[2]
now = int(time.time())


def jwk(algorithm, key, kid, alg):
    d = json.loads(algorithm.to_jwk(key.public_key()))
    d.pop("key_ops", None)
    d.update(kid=kid, use="sig", alg=alg)
    return d


rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa_other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_key = ec.generate_private_key(ec.SECP256R1())
ed_key = ed25519.Ed25519PrivateKey.generate()


def claims(**extra):
    c = {"iss": issuer, "aud": audience, "sub": "user-1", "iat": now, "exp": now + 3600,
         "scope": "profile orders:read", "name": "Zoë"}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def sign(key, alg, kid, **extra):
    return jwt.encode(claims(**extra), key, algorithm=alg, headers={"kid": kid})


print(json.dumps({
    "jwks_url_doc": {"keys": [jwk(RSAAlgorithm, rsa_key, "rsa-1", "RS256")]},
    "jwks_inline": {"keys": [jwk(ECAlgorithm, ec_key, "ec-1", "ES256"),
                              jwk(OKPAlgorithm, ed_key, "ed-1", "EdDSA")]},
    "tokens": {
        "rs256": sign(rsa_key, "RS256", "rsa-1"),
        "es256": sign(ec_key, "ES256", "ec-1"),
        "eddsa": sign(ed_key, "EdDSA", "ed-1"),
        "expired": sign(rsa_key, "RS256", "rsa-1", iat=now - 7200, exp=now - 3600),
        "wrong_audience": sign(rsa_key, "RS256", "rsa-1", aud="someone-else"),
        "wrong_issuer": sign(rsa_key, "RS256", "rsa-1", iss="https://evil.test/"),
        "wrong_signature": sign(rsa_other, "RS256", "rsa-1"),
        "missing_scope": sign(rsa_key, "RS256", "rsa-1", scope="orders:read"),
        "unsigned": jwt.encode(claims(), None, algorithm="none"),
        "hs256_with_public_key": jwt.encode(claims(), "rsa-1 " * 8, algorithm="HS256",
                                            headers={"kid": "rsa-1"}),
    },
}))
