"""FAB's security manager for LDAP logins, named by the generated webserver_config.py.

FAB gives an LDAP user who is in none of AUTH_ROLES_MAPPING's groups the
registration role, "Public" unless set, and logs them in. Without
AIRFLOW_ECS_LDAP_DEFAULT_ROLE such a user is refused instead: they get no role
(rather than FAB looking up, and warning about, a registration role on every
login) and their login fails, in the UI and at /auth/token alike. With
AUTH_ROLES_SYNC_AT_LOGIN a user removed from every mapped group is refused at
their next login the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.fab.auth_manager.security_manager.override import (
    FabAirflowSecurityManagerOverride,
)

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
