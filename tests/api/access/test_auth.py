"""Authentication: forged, expired and wrong-type tokens, logout, and login messages and throttling."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt

from api.main import create_app
from auth.tokens import ACCESS, REFRESH, issue_token
from core.access import Role
from testkit.api import anonymous_client, client_for
from testkit.world import assert_401, assert_refresh_401, login


def forge(header: dict, payload: dict, signature: bytes = b"") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)])


async def test_expired_tampered_forged_and_wrong_type_tokens_are_401(world):
    s, user, org = world.settings, world.owner_id, world.ids["org_id"]
    good, _ = issue_token(s.secret_key, user, org, ACCESS, 0, timedelta(minutes=5))
    async with anonymous_client(world.app, {"Authorization": f"Bearer {good}"}) as client:
        assert (await client.get("/api/v1/auth/me")).status_code == 200  # the control
    expired, _ = issue_token(s.secret_key, user, org, ACCESS, 0, timedelta(seconds=-30))
    await assert_401(world.app, expired, message="expired")

    head, payload, signature = good.split(".")
    i = len(payload) // 2
    tampered = ".".join([head, payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1 :], signature])
    await assert_401(world.app, tampered)
    claims = jwt.decode(good, s.secret_key, algorithms=["HS256"])
    await assert_401(world.app, jwt.encode(claims, "another-secret-of-at-least-32-characters!", algorithm="HS256"))
    await assert_401(world.app, forge({"alg": "none", "typ": "JWT"}, claims))
    await assert_401(world.app, forge({"alg": "none", "typ": "JWT"}, claims)[:-1])  # no trailing dot either
    await assert_401(world.app, forge({"alg": "HS256", "typ": "JWT"}, claims))  # no signature
    # signed with the real secret, but for a user or an organization that does not fit
    await assert_401(world.app, issue_token(s.secret_key, "no-such-user", org, ACCESS, 0, timedelta(minutes=5))[0])
    await assert_401(
        world.app,
        issue_token(s.secret_key, user, world.b_ids["org_id"], ACCESS, 0, timedelta(minutes=5))[0],
        message="member",
    )
    await assert_401(
        world.app, issue_token(s.secret_key, user, org, ACCESS, 7, timedelta(minutes=5))[0], message="revoked"
    )

    refresh, _ = issue_token(s.secret_key, user, org, REFRESH, 0, timedelta(days=1))
    await assert_401(world.app, refresh, message="expected an access token")
    await assert_refresh_401(world.app, good)
    await assert_refresh_401(world.app, issue_token(s.secret_key, user, org, REFRESH, 0, timedelta(seconds=-30))[0])
    async with anonymous_client(world.app) as client:  # the control: a real refresh token works
        assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})).status_code == 200


async def test_logout_revokes_the_access_and_refresh_tokens(world):
    response = await login(world.app, "victor")
    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["role"] == "viewer" and pair["org_id"] == world.ids["org_id"]
    async with anonymous_client(world.app, {"Authorization": f"Bearer {pair['access_token']}"}) as client:
        assert (await client.get("/api/v1/datasets")).status_code == 200
        assert (await client.post("/api/v1/auth/logout")).status_code == 204
    await assert_401(world.app, pair["access_token"], message="revoked")
    await assert_401(world.app, pair["access_token"], path="/api/v1/datasets")
    await assert_refresh_401(world.app, pair["refresh_token"])
    # every earlier token, not just this pair
    await assert_401(world.app, world.viewer.headers["authorization"].split()[1])
    again = (await login(world.app, "victor")).json()
    await assert_401(world.app, pair["access_token"])
    async with anonymous_client(world.app, {"Authorization": f"Bearer {again['access_token']}"}) as client:
        assert (await client.get("/api/v1/datasets")).status_code == 200


async def test_login_gives_one_message_for_unknown_users_and_wrong_passwords_and_is_throttled(offline_settings):
    settings = offline_settings.model_copy(update={"login_failures_per_minute": 3})
    app = create_app(settings)
    client_for(app, settings, "alice", "org-a", Role.OWNER)
    client_for(app, settings, "victor", "org-a", Role.VIEWER)
    unknown, wrong = await login(app, "mallory", "whatever-password"), await login(app, "alice", "wrong-password")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json() == {"detail": "wrong username or password"}
    assert unknown.headers["www-authenticate"] == "Bearer"
    assert (await login(app, "alice", "wrong-password")).status_code == 401
    assert (await login(app, "alice", "wrong-password")).status_code == 401
    throttled = await login(app, "alice")  # the right password, after 3 failures
    assert throttled.status_code == 429 and "at most 3 per minute" in throttled.json()["detail"]
    assert (await login(app, "victor")).status_code == 200  # another account is not locked out
    # the login body cannot choose a role
    response = await login(app, "victor", role="owner")
    assert response.status_code == 422 and any("role" in map(str, e["loc"]) for e in response.json()["detail"])
