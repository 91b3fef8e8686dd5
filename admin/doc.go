// Package admin serves the bridge's admin HTTP API on its own listener:
// health and readiness probes, Prometheus metrics, optional pprof, and a
// versioned JSON API (/v1) to list connections and groups and to push,
// broadcast and disconnect from any language. docs/ADMIN.md documents it
// and openapi.yaml describes it; a test keeps that file equal to the routes.
//
// /healthz and /readyz are open; everything else requires
// "Authorization: Bearer <token>", compared in constant time. Without a
// token the protected routes are off: they answer 503 token_not_set, never
// open.
//
// The /v1 pushes and disconnects call sender.Service, the same implementation
// as the goridge RPC methods, so both check, limit and answer alike, with
// the same error codes.
package admin
