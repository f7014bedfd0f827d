"""An OpenID Connect provider for the login tests, built on Authlib's server side.

It serves, on 127.0.0.1 on a free port: the discovery document, the JWKS (one
RSA key made at start), the authorization endpoint (a login form; the
authorization code flow with nonce), the token endpoint (client_secret_basic or
client_secret_post; an RS256-signed ID token) and the userinfo endpoint (with a
`groups` claim). Users and their groups are given at start. Codes and tokens
live in memory: the provider is one test module's.

Authlib's server components are used for everything the protocol checks
(client authentication, redirect URIs, PKCE, nonce, ID token claims and
signature); what is written here is the storage Authlib leaves to its user,
since no database is wanted for a provider that lives as long as a test.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oidc.core import UserInfo, UserInfoEndpoint
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

from tests.support.servers import free_port


@dataclass
class User:
    sub: str
    username: str
    password: str
    email: str
    groups: list[str]

    def get_user_id(self) -> str:
        return self.sub


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scope: str = "openid email profile groups"
    client_metadata: dict = field(default_factory=dict)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Token(TokenMixin):
    access_token: str
    client: Client
    user: User
    scope: str
    issued_at: float = field(default_factory=time.time)
    expires_in: int = 3600
    revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() > self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Client:
        return self.client


class OidcProvider:
    """The provider; `url` is its issuer. start() serves it in a thread, stop() ends it."""

    def __init__(self, client: Client, users: list[User], host: str = "127.0.0.1",
                 port: int | None = None):
        self.host, self.port = host, port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.client = client
        self.users = {user.username: user for user in users}
        self.key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8),
                                                         "use": "sig", "alg": "RS256"})
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, Token] = {}
        self.logins: list[str] = []  # user names, in order of their successful logins
        self.app = self._app()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # --- Authlib's storage hooks -------------------------------------------------------------
    def _app(self) -> Flask:
        provider = self
        app = Flask("oidc-provider")
        app.config["OAUTH2_ACCESS_TOKEN_GENERATOR"] = True

        def query_client(client_id: str) -> Client | None:
            return provider.client if client_id == provider.client.client_id else None

        def save_token(token: dict, req: Any) -> None:
            provider.tokens[token["access_token"]] = Token(
                token["access_token"], req.client, req.user, token.get("scope", ""),
                expires_in=token.get("expires_in", 3600))

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS: ClassVar = ["client_secret_basic",
                                                     "client_secret_post"]

            def save_authorization_code(self, code: str, req: Any) -> None:
                payload = req.payload
                provider.codes[code] = Code(
                    code, req.client.client_id, payload.redirect_uri, payload.scope, req.user,
                    payload.data.get("nonce"), payload.data.get("code_challenge"),
                    payload.data.get("code_challenge_method"))

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                found = provider.codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> User:
                return authorization_code.user

        class IdToken(OpenIDCode):
            def resolve_client_private_key(self, client: Client) -> RSAKey:
                return provider.key

            def get_client_algorithm(self, client: Client) -> str:
                return "RS256"

            def get_encode_header(self, client: Client) -> dict:
                return {"alg": "RS256", "kid": provider.key.kid}

            def get_client_claims(self, client: Client) -> dict:
                now = int(time.time())
                return {"iss": provider.url, "aud": [client.client_id], "iat": now,
                        "exp": now + 600}

            def exists_nonce(self, nonce: str, req: Any) -> bool:
                return any(c.nonce == nonce for c in provider.codes.values())

            def generate_user_info(self, user: User, scope: str) -> UserInfo:
                return provider.claims(user)

        class Bearer(BearerTokenValidator):
            def authenticate_token(self, token_string: str) -> Token | None:
                return provider.tokens.get(token_string)

        class UserInfoAnswer(UserInfoEndpoint):
            def generate_user_info(self, user: User, scope: str) -> UserInfo:
                return provider.claims(user)

            def get_issuer(self) -> str:
                return provider.url

        server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
        server.register_grant(CodeGrant, [IdToken(require_nonce=True)])
        protector = ResourceProtector()
        protector.register_token_validator(Bearer())
        server.register_endpoint(UserInfoAnswer(resource_protector=protector))

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return jsonify({
                "issuer": provider.url,
                "authorization_endpoint": provider.url + "/authorize",
                "token_endpoint": provider.url + "/token",
                "userinfo_endpoint": provider.url + "/userinfo",
                "jwks_uri": provider.url + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": provider.client.scope.split(),
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post"],
                "claims_supported": ["sub", "preferred_username", "email", "groups"],
                "code_challenge_methods_supported": ["S256"],
            })

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify({"keys": [provider.key.as_dict(private=False)]})

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            if request.method == "GET":
                try:
                    server.get_consent_grant(end_user=None)
                except Exception as exc:
                    return f"invalid authorization request: {html.escape(str(exc))}", 400
                hidden = "".join(
                    f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                    for k, v in request.args.items())
                return (
                    "<!doctype html><title>Test provider</title><h1>Sign in</h1>"
                    f'<form method="post" action="/authorize">{hidden}'
                    '<label>User <input name="username" id="username"></label>'
                    '<label>Password <input name="password" id="password" type="password">'
                    '</label><button type="submit" id="sign-in">Sign in</button></form>')
            user = provider.users.get(request.form.get("username", ""))
            if user is None or not secrets.compare_digest(request.form.get("password", ""),
                                                          user.password):
                return "wrong user name or password", 401
            provider.logins.append(user.username)
            grant = server.get_consent_grant(end_user=user)
            return server.create_authorization_response(grant=grant, grant_user=user)

        @app.post("/token")
        def token() -> Any:
            return server.create_token_response()

        @app.route("/userinfo", methods=["GET", "POST"])
        def userinfo() -> Any:
            return server.create_endpoint_response("userinfo")

        return app

    def claims(self, user: User) -> UserInfo:
        return UserInfo(sub=user.sub, preferred_username=user.username, email=user.email,
                        email_verified=True, groups=list(user.groups))

    # --- serving ------------------------------------------------------------------------------
    def start(self) -> OidcProvider:
        self._server = make_server(self.host, self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="oidc-provider")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
