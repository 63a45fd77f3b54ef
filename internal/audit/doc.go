// Package audit records security-relevant events — admin actions, logins,
// refusals — in a capped Redis stream that admins can page through, one log
// line each, and, when configured, POSTs security events to a webhook
// without ever blocking a request.
//
// Record is the only call on the request path and it never waits: it fills
// in the time, writes the slog line at once (so an event survives in the
// logs even when Redis or the webhook is down), and hands the event to two
// bounded queues. A single writer drains the store queue in batches, each
// one pipeline of XADDs; a small fixed pool of workers POSTs the security
// events. A full queue drops the event and counts it in
// llmgate_audit_dropped_total; nothing in this package grows without bound.
//
// Keys, under Config.Prefix:
//
//	audit   stream, one entry per event, field "event" = the Event as JSON
//	        (without its id, which is the entry id); XADD MAXLEN ~ Config.MaxLen
//
// The stream is one key, so the log works unchanged on Redis Cluster, and
// entry ids are assigned by Redis, so every replica can append to the same
// stream and List sees one newest-first history.
//
// go-redis is used only in log.go (the client New is given) and store.go.
package audit
