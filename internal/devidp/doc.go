// Package devidp is the development OpenID Provider that `llmgate dev` runs
// and that the gateway's tests sign in against.
//
// It is built on zitadel/oidc's certified op package, so discovery, JWKS,
// the authorization code flow with PKCE (S256 only), refresh tokens,
// userinfo, revocation, introspection and RP-initiated logout
// (end_session_endpoint) behave like a real identity provider. Only the
// storage (users, clients, auth requests, tokens, browser sessions) and the
// login page are ours, all in memory: everything is lost on Close.
//
// The provider serves plain HTTP on a loopback address; its issuer is
// "http://" + the address it listens on. Users sign in on a plain HTML form
// (fields "username", "password" and the hidden "authRequestID", posted to
// /login). A successful sign-in also starts a browser session (an HttpOnly
// cookie), so a second authorization request from the same browser completes
// without the form, as with a real IdP, unless it asks for prompt=login or a
// max_age that has passed; end_session ends that session.
//
// ID tokens are RS256-signed with a key generated at Start and carry sub,
// email, email_verified, name, preferred_username (the email), groups and
// nonce, depending on the scopes requested (openid, email, profile, groups),
// and sid, the public id of the browser session the person signed in with
// (the same for every sign-in of that session, and kept by refreshed ID
// tokens); refresh tokens are issued only when offline_access is requested,
// as with Okta, Entra ID, Keycloak or Dex, and rotate on every use.
// Config.ClaimsHook lets a test forge any claim of the signed ID token.
//
// Back-channel logout (OpenID Connect Back-Channel Logout 1.0) is advertised
// in discovery with session support. A client registered with a
// BackChannelLogoutURI receives a signed logout token (iss, aud, iat, exp,
// jti, sub, sid, events; typ logout+jwt), form-POSTed as logout_token, for
// each browser session it was signed into during when that session ends: at
// end_session, when SetDisabled disables the person, and at LogoutUser. The
// POSTs happen before those return, so a test can check their effect at
// once. LogoutToken and ForeignLogoutToken mint such tokens, forged as a
// test likes, without sending them.
//
// This package is for development and tests only: passwords are kept in
// plain text and the issuer is plain HTTP.
package devidp
