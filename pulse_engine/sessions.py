"""Login sessions: password login, refresh-token rotation with reuse detection, logout.

* Login answers every failure (unknown email, wrong password, inactive user, inactive
  tenant) with the same 401 body, spends the same Argon2 time on unknown emails
  (:func:`~pulse_engine.passwords.verify_dummy`), and is rate-limited per client address
  and per account (429 with ``Retry-After``). A good login clears the account's counter.
* Each login starts a refresh-token *family*. Refreshing marks the presented token used
  and issues a new pair in the same family; presenting a used token again means it was
  stolen (or replayed), so the whole family is revoked and the event audited.
* Logout revokes the access token on every process (``auth.token_revoked``) and its login
  session (the refresh-token family it was issued in, and the given refresh token's).
* Revoking a family (logout, reuse, a role change, a deactivated user or tenant:
  :func:`revoke_sessions`) also revokes every access token issued in it, on every process
  at once: access tokens carry their family (``fam``), and the family's key goes on the
  same revocation list until the newest of them would have expired.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import audit
from pulse_engine.auth import session_revocation_key, unauthorized
from pulse_engine.passwords import hash_password, needs_rehash, verify_dummy, verify_password
from pulse_engine.problems import Problem
from pulse_engine.tokens import Principal, TokenError

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine


@dataclass(frozen=True)
class TokenPair:
    """What login and refresh answer."""

    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"

    def as_dict(self) -> dict[str, Any]:
        """The JSON body."""
        return asdict(self)


def login_refused() -> Problem:
    """The one answer to every failed login, whatever the reason."""
    return Problem(
        401,
        "invalid-credentials",
        "The email or password is incorrect.",
        headers={"WWW-Authenticate": 'Bearer realm="pulse"'},
    )


def refresh_refused() -> Problem:
    """The answer to a refresh token that is invalid, used, revoked or of an inactive user."""
    return unauthorized("The refresh token is not valid.")


def _limiter_key(kind: str, value: str) -> str:
    """A rate-limit key that keeps emails and addresses out of the limiter's store."""
    return f"login:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


async def _check_login_rate(engine: PulseEngine, email: str, client_address: str) -> None:
    settings = engine.settings
    window = settings.login_window_seconds
    limiter = engine.rate_limiter
    decision = await limiter.hit(
        _limiter_key("address", client_address),
        limit=settings.login_attempts_per_address,
        window=window,
    )
    if decision.allowed:
        decision = await limiter.hit(
            _limiter_key("account", email),
            limit=settings.login_attempts_per_account,
            window=window,
        )
    if not decision.allowed:
        raise Problem(
            429,
            "too-many-login-attempts",
            "Too many login attempts; try again later.",
            headers={"Retry-After": str(decision.retry_after)},
            retry_after=decision.retry_after,
        )


async def _issue(
    engine: PulseEngine,
    session: AsyncSession,
    *,
    user_id: str,
    tenant_id: str | None,
    role: str,
    family_id: str,
) -> tuple[TokenPair, Principal]:
    """Issue an access token and a refresh token of ``family_id``, storing the latter."""
    access_token, principal = engine.tokens.issue_access(
        user_id=user_id, tenant_id=tenant_id, role=role, family_id=family_id
    )
    refresh_token, jti = engine.tokens.issue_refresh(
        user_id=user_id, tenant_id=tenant_id, family_id=family_id
    )
    table = engine.core_tables["refresh_tokens"]
    await session.execute(
        pg_insert(table).values(
            jti=jti,
            family_id=family_id,
            user_id=user_id,
            tenant_id=tenant_id,
            expires_at=datetime.now(UTC) + timedelta(seconds=engine.tokens.config.refresh_ttl),
        )
    )
    pair = TokenPair(access_token, refresh_token, engine.tokens.config.access_ttl)
    return pair, principal


async def _account(engine: PulseEngine, session: AsyncSession, **where: str) -> Any:
    """A user row with its tenant's ``active`` flag (None for a superadmin), or None."""
    users = engine.core_tables["users"]
    tenants = engine.core_tables["tenants"]
    query = select(users, tenants.c.active.label("tenant_active")).outerjoin(
        tenants, tenants.c.id == users.c.tenant_id
    )
    for column, value in where.items():
        query = query.where(users.c[column] == value)
    return (await session.execute(query)).first()


def _refusal_reason(row: Any, password_ok: bool) -> str | None:
    if row is None:
        return "unknown_email"
    if not password_ok:
        return "wrong_password"
    if not row.active:
        return "inactive_user"
    if row.tenant_id is not None and not row.tenant_active:
        return "inactive_tenant"
    return None


async def login(
    engine: PulseEngine, *, email: str, password: str, client_address: str
) -> TokenPair:
    """Check an email and password; return a new token pair or raise the uniform 401."""
    email = email.strip().lower()
    await _check_login_rate(engine, email, client_address)
    async with engine.db.system_session() as session:
        row = await _account(engine, session, email=email)
    if row is None:
        password_ok = await asyncio.to_thread(verify_dummy, password)
    else:
        password_ok = await asyncio.to_thread(verify_password, row.password_hash, password)
    reason = _refusal_reason(row, password_ok)
    async with engine.db.system_session() as session:
        if reason is not None:
            await audit.record(
                engine,
                session,
                tenant_id=row.tenant_id if row else None,
                actor=None,
                action="auth.login_failed",
                target=f"user:{row.id}" if row else None,
                details={"email": email[:320], "reason": reason},
                client_address=client_address,
            )
        else:
            if needs_rehash(row.password_hash):
                users = engine.core_tables["users"]
                new_hash = await asyncio.to_thread(hash_password, password)
                await session.execute(
                    update(users).where(users.c.id == row.id).values(password_hash=new_hash)
                )
            pair, principal = await _issue(
                engine,
                session,
                user_id=row.id,
                tenant_id=row.tenant_id,
                role=row.role,
                family_id=uuid.uuid4().hex,
            )
            await audit.record(
                engine,
                session,
                tenant_id=row.tenant_id,
                actor=principal,
                action="auth.login",
                target=f"user:{row.id}",
                details={"email": email},
                client_address=client_address,
            )
    if reason is not None:
        raise login_refused()
    await engine.rate_limiter.reset(_limiter_key("account", email))
    return pair


@dataclass(frozen=True)
class RevokedSessions:
    """Login sessions revoked in a transaction, to announce once it committed."""

    keys: list[str]
    expires_at: float


async def revoke_sessions(
    engine: PulseEngine, session: AsyncSession, where: ColumnElement[bool]
) -> RevokedSessions:
    """Revoke the refresh-token families matching ``where`` and their access tokens.

    In the caller's transaction: the refresh tokens are marked revoked and each family's
    key is stored on the revocation list until every access token it issued has expired.
    Call :func:`announce_revoked_sessions` after the commit so every process knows.
    """
    table = engine.core_tables["refresh_tokens"]
    revoked = engine.core_tables["revoked_access_tokens"]
    now = datetime.now(UTC)
    families = sorted(set((await session.execute(
        update(table).where(where, table.c.revoked_at.is_(None))
        .values(revoked_at=now).returning(table.c.family_id)
    )).scalars()))
    until = now + timedelta(seconds=engine.tokens.config.access_ttl)
    keys = [session_revocation_key(family) for family in families]
    if keys:
        await session.execute(
            pg_insert(revoked)
            .values([{"jti": key, "expires_at": until} for key in keys])
            .on_conflict_do_update(index_elements=[revoked.c.jti],
                                   set_={"expires_at": until})
        )
    return RevokedSessions(keys, until.timestamp())


async def announce_revoked_sessions(engine: PulseEngine, revoked: RevokedSessions) -> None:
    """Note committed session revocations in this process at once (the others hear them
    from PostgreSQL, :mod:`pulse_engine.revocations`)."""
    for key in revoked.keys:
        engine.authenticator.note_revoked(key, revoked.expires_at)


async def _revoke_family(
    engine: PulseEngine, session: AsyncSession, family_id: str
) -> RevokedSessions:
    return await revoke_sessions(
        engine, session, engine.core_tables["refresh_tokens"].c.family_id == family_id)


async def refresh(engine: PulseEngine, *, refresh_token: str, client_address: str) -> TokenPair:
    """Rotate a refresh token: a new pair, the old token used; reuse revokes the family."""
    try:
        claims = engine.tokens.decode_refresh(refresh_token)
    except TokenError:
        raise refresh_refused() from None
    table = engine.core_tables["refresh_tokens"]
    pair: TokenPair | None = None
    revoked = RevokedSessions([], 0.0)
    async with engine.db.system_session() as session:
        stored = (
            await session.execute(
                select(table).where(table.c.jti == claims["jti"]).with_for_update()
            )
        ).first()
        if stored is None or stored.family_id != claims["fam"] or stored.user_id != claims["sub"]:
            raise refresh_refused()
        if stored.revoked_at is None and stored.used_at is not None:
            revoked = await _revoke_family(engine, session, stored.family_id)
            await audit.record(
                engine,
                session,
                tenant_id=stored.tenant_id,
                actor=None,
                action="auth.refresh_reuse_detected",
                target=f"user:{stored.user_id}",
                details={"family_id": stored.family_id},
                client_address=client_address,
            )
        elif stored.revoked_at is None:
            account = await _account(engine, session, id=stored.user_id)
            if _refusal_reason(account, password_ok=True) is not None:
                revoked = await _revoke_family(engine, session, stored.family_id)
            else:
                await session.execute(
                    update(table).where(table.c.jti == stored.jti).values(used_at=datetime.now(UTC))
                )
                pair, _principal = await _issue(
                    engine,
                    session,
                    user_id=account.id,
                    tenant_id=account.tenant_id,
                    role=account.role,
                    family_id=stored.family_id,
                )
    await announce_revoked_sessions(engine, revoked)
    if pair is None:
        raise refresh_refused()
    return pair


async def logout(
    engine: PulseEngine,
    *,
    principal: Principal,
    refresh_token: str | None,
    client_address: str,
) -> None:
    """Revoke the caller's access token everywhere and, if given, its refresh family."""
    if principal.kind != "user":
        raise Problem(400, "not-a-session", "API keys are revoked through the admin API.")
    family_id = None
    if refresh_token is not None:
        try:
            claims = engine.tokens.decode_refresh(refresh_token)
        except TokenError:
            claims = None
        if claims is None or claims["sub"] != principal.user_id:
            raise Problem(400, "invalid-refresh-token", "The refresh token is not valid.")
        family_id = claims["fam"]
    revoked = engine.core_tables["revoked_access_tokens"]
    expires_at = datetime.fromtimestamp(principal.expires_at, UTC)
    sessions = RevokedSessions([], 0.0)
    async with engine.db.system_session() as session:
        await session.execute(
            pg_insert(revoked)
            .values(jti=principal.jti, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=[revoked.c.jti])
        )
        # the session the token was issued in ends too, with or without its refresh token
        families = {family for family in (family_id, principal.family_id) if family}
        if families:
            sessions = await revoke_sessions(
                engine, session,
                engine.core_tables["refresh_tokens"].c.family_id.in_(sorted(families)))
        await audit.record(
            engine,
            session,
            tenant_id=principal.tenant_id,
            actor=principal,
            action="auth.token_revoked",
            target=f"user:{principal.user_id}",
            details={"jti": principal.jti, "refresh_family_revoked": bool(families)},
            client_address=client_address,
        )
    engine.authenticator.note_revoked(principal.jti, principal.expires_at)
    await announce_revoked_sessions(engine, sessions)


async def whoami(engine: PulseEngine, principal: Principal) -> dict[str, Any]:
    """The caller as stored: a user's email and tenant, or an API key's name and scopes."""
    base = {
        "kind": principal.kind,
        "tenant_id": principal.tenant_id,
        "role": principal.role,
        "scopes": sorted(principal.scopes),
        "email": None,
        "name": None,
    }
    async with engine.db.system_session() as session:
        if principal.kind == "api_key":
            key_id = principal.user_id.removeprefix("api_key:")
            keys = engine.core_tables["api_keys"]
            name = (await session.execute(select(keys.c.name).where(keys.c.id == key_id))).scalar()
            return {**base, "id": key_id, "name": name}
        account = await _account(engine, session, id=principal.user_id)
    if account is None:
        raise unauthorized("The account no longer exists.")
    return {**base, "id": account.id, "email": account.email}
