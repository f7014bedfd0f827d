"""FAB's security managers for LDAP and OIDC logins, named by the generated webserver_config.py.

FAB gives an LDAP user who is in none of AUTH_ROLES_MAPPING's groups the
registration role, "Public" unless set, and logs them in. Without
AIRFLOW_ECS_LDAP_DEFAULT_ROLE such a user is refused instead: they get no role
(rather than FAB looking up, and warning about, a registration role on every
login) and their login fails, in the UI and at /auth/token alike. With
AUTH_ROLES_SYNC_AT_LOGIN a user removed from every mapped group is refused at
their next login the same way.

OIDC (AUTH_OAUTH) works the same way, with the groups read from the claim
AIRFLOW_ECS_OIDC_GROUPS_CLAIM names and the user name from
AIRFLOW_ECS_OIDC_USERNAME_CLAIM, whichever of the ID token (validated by Authlib:
signature, issuer, audience, nonce, expiry) and the userinfo answer holds them.
FAB's own generic provider reads `preferred_username` and `groups` from the
userinfo answer alone, where Cognito, for one, does not put its groups.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.fab.auth_manager.security_manager.override import (
    FabAirflowSecurityManagerOverride,
)
from flask import current_app

from entrypoint import private_apis

log = logging.getLogger(__name__)


class LdapSecurityManager(FabAirflowSecurityManagerOverride):
    # Overridden only while FAB's method has the shape this was written against.
    if private_apis.lookup(private_apis.FAB_LDAP_USER_ROLES) is not None:
        def _ldap_calculate_user_roles(self, user_attributes: dict[str, list[bytes]]
                                       ) -> list[Any]:
            if self.auth_user_registration_role:
                return list(super()._ldap_calculate_user_roles(user_attributes))
            keys = self.ldap_extract_list(user_attributes, self.auth_ldap_group_field)
            return list(self.get_roles_from_keys(keys))

    def auth_user_ldap(self, username: str, password: str, rotate_session_id: bool = True
                       ) -> Any:
        user = super().auth_user_ldap(username, password, rotate_session_id)
        if user is not None and not user.roles:
            log.info("LDAP user %r is in none of AIRFLOW_ECS_LDAP_ROLES_MAPPING's groups and "
                     "AIRFLOW_ECS_LDAP_DEFAULT_ROLE is unset: login refused", username)
            return None
        return user


class OidcSecurityManager(FabAirflowSecurityManagerOverride):
    def get_oauth_user_info(self, provider: str, resp: dict[str, Any]) -> dict[str, Any]:
        config = current_app.config
        claims = oidc_claims(resp, lambda: self.oauth_remotes[provider].userinfo(token=resp))
        return userinfo_from_claims(claims, config["OIDC_USERNAME_CLAIM"],
                                    config["OIDC_GROUPS_CLAIM"])

    def auth_user_oauth(self, userinfo: dict[str, Any], rotate_session_id: bool = True) -> Any:
        if not userinfo.get("username"):
            return None  # said by userinfo_from_claims; FAB would try the e-mail address
        if not self.auth_user_registration_role \
                and not self.get_roles_from_keys(userinfo.get("role_keys", [])):
            # Refused before FAB registers them (with no role) or syncs an existing account.
            log.info("OIDC user %r is in none of AIRFLOW_ECS_OIDC_ROLES_MAPPING's groups and "
                     "AIRFLOW_ECS_OIDC_DEFAULT_ROLE is unset: login refused",
                     userinfo["username"])
            return None
        return super().auth_user_oauth(userinfo, rotate_session_id)


def oidc_claims(token: dict[str, Any], fetch_userinfo: Any) -> dict[str, Any]:
    """The ID token's claims, which Authlib validated into token["userinfo"], completed by
    the userinfo endpoint's answer (fetch_userinfo()), which must be about the same user."""
    claims = dict(token.get("userinfo") or {})
    if not claims.get("sub"):
        raise ValueError("the token answer has no ID token: is openid in "
                         "AIRFLOW_ECS_OIDC_SCOPES?")
    extra = dict(fetch_userinfo())
    if extra.get("sub") != claims["sub"]:
        # OpenID Connect Core 1.0, 5.3.2: the answer must not be used otherwise.
        raise ValueError("the userinfo answer is about another subject than the ID token")
    return {**claims, **extra}


def userinfo_from_claims(claims: dict[str, Any], username_claim: str, groups_claim: str
                         ) -> dict[str, Any]:
    """FAB's userinfo (its User columns and role_keys) from the claims."""
    username = claims.get(username_claim)
    if not isinstance(username, str) or not username.strip():
        log.warning("OIDC login refused: the claims have no %r (AIRFLOW_ECS_OIDC_USERNAME_CLAIM);"
                    " they have: %s", username_claim, ", ".join(sorted(claims)))
        return {}
    groups = claims.get(groups_claim, [])
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list):
        groups = []
    return {
        "username": username.strip(),
        "email": claims.get("email") or "",
        "first_name": claims.get("given_name") or "",
        "last_name": claims.get("family_name") or "",
        "role_keys": [group for group in groups if isinstance(group, str)],
    }
