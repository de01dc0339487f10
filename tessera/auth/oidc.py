"""Optional OpenID Connect: bearer JWTs from an external provider, checked against its
issuer, audience and signing keys (JWKS, fetched and cached by PyJWT)."""

from __future__ import annotations

import jwt

from tessera.config import Settings

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]


class OidcValidator:
    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience or None
        self.username_claim = settings.oidc_username_claim
        self.tenant_claim = settings.oidc_tenant_claim
        self.keys = jwt.PyJWKClient(settings.oidc_jwks_url, cache_keys=True, lifespan=300)

    def claims(self, token: str) -> dict:
        """The token's claims; raises jwt.PyJWTError when it is not valid for us."""
        signing_key = self.keys.get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            signing_key.key,
            algorithms=ALGORITHMS,
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["exp", "iss"] + (["aud"] if self.audience else [])},
            leeway=30,
        )


def validator_for(settings: Settings) -> OidcValidator | None:
    if not settings.oidc_issuer:
        return None
    if not settings.oidc_jwks_url:
        raise ValueError("TESSERA_OIDC_ISSUER is set but TESSERA_OIDC_JWKS_URL is not")
    return OidcValidator(settings)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith(("tsk_", "tss_", "tsv_"))
