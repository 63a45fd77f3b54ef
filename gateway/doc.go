// Package gateway is llmgate's HTTP edge: every route (routes.go), the
// middleware that authenticates browsers and API callers, the login and
// logout handlers that join the oidc relying party to the session store,
// the one mapping from errors to responses (errors.go), health, readiness
// and metrics, and the server lifecycle with graceful shutdown.
//
// Gin stays inside this package: handlers pass plain values and
// c.Request.Context() to the packages below.
package gateway
