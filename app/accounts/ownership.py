"""Who may link an account: the one place where each provider's ownership rule is enforced.

Every provider says, per account, what proves that the account is the caller's (its plugin's
`prove`): the user's own credential (`secret`), the user's own session token for the provider
(`user_token`), or nothing (`trusted_link`, ids only). Linking and one-shot queries go through
`require_proof`; rows linked before the gateway checked (no recorded ownership) go through
`admit_unrecorded` on every read.
"""

from __future__ import annotations

import time

import jwt
from pydantic import BaseModel

from app.errors import GatewayError, InvalidRequest, OwnershipProofRequired
from app.providers.base import Ownership, Proof, ProviderPlugin
from app.security.principal import LINK_TRUSTED, Principal

TOKEN_LEEWAY = 30.0
"""Seconds of clock skew allowed when telling whether a user's token has expired."""


def require_proof(plugin: ProviderPlugin, account: BaseModel, principal: Principal) -> Ownership:
    """What proves `account` is the caller's; raises 403 or 422 when nothing does."""
    proof = plugin.prove(account)
    if proof.kind is Ownership.TRUSTED_LINK:
        # An end user's word is not proof; only a service that checked ownership itself may vouch.
        if principal.kind == "user" or LINK_TRUSTED not in principal.scopes:
            raise OwnershipProofRequired(_unproven(plugin, proof), provider=plugin.name)
    elif proof.kind is Ownership.USER_TOKEN:
        problem = token_problem(proof)
        if problem is not None:
            raise InvalidRequest(
                f"The {plugin.display_name} account's `{proof.field}` {problem}.",
                provider=plugin.name,
                field_errors=[
                    {"loc": ("body", proof.field), "msg": problem, "type": "ownership_proof"}
                ],
            )
    return proof.kind


def admit_unrecorded(plugin: ProviderPlugin, account: BaseModel) -> GatewayError | None:
    """For a row linked before ownership was recorded: None if it may still be served."""
    proof = plugin.prove(account)
    if proof.kind is Ownership.SECRET:
        return None  # the credential itself proves it, at every query
    if proof.kind is Ownership.USER_TOKEN and token_problem(proof) is None:
        return None
    return OwnershipProofRequired(
        f"This {plugin.display_name} account was linked before the gateway checked ownership "
        f"and carries no proof of it: link it again ({_unproven_hint(proof)}).",
        provider=plugin.name,
    )


def token_problem(proof: Proof, *, now: float | None = None) -> str | None:
    """Why the user's token does not prove the account, or None when it does.

    Only the token's form and subject are checked here; its signature is the provider's to check,
    and the provider does, since this token is what the gateway sends on every query.
    """
    if not proof.token or proof.subject is None:
        return "is missing"
    try:
        claims = jwt.decode(proof.token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "is not a well-formed JWT"
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        return "has no `sub` claim"
    if not proof.same_subject(subject, proof.subject):
        return "was issued for another account (its `sub` is not the account's id)"
    expires = claims.get("exp")
    at = time.time() if now is None else now
    if isinstance(expires, int | float) and not isinstance(expires, bool):
        return "has expired" if expires + TOKEN_LEEWAY < at else None
    return None


def _unproven(plugin: ProviderPlugin, proof: Proof) -> str:
    return (
        f"A {plugin.display_name} account given by its ids alone cannot be proven to be this "
        f"user's: {_unproven_hint(proof)}."
    )


def _unproven_hint(proof: Proof) -> str:
    vouch = f"or have a service holding the {LINK_TRUSTED} scope link it"
    return f"{proof.hint}, {vouch}" if proof.hint else vouch
