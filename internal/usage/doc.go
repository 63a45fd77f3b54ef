// Package usage meters LLM calls: it reads token usage out of responses as
// they stream past, and records it per person, model and day in Redis
// without ever delaying a response.
//
// A Meter is an io.Writer the proxy tees a response body into. It reads the
// usage object of OpenAI (chat completions, completions, embeddings, the
// Responses API) and Anthropic (messages) answers, as JSON or as
// server-sent events, incrementally: it never fails, never blocks, keeps no
// copy of a JSON body and decodes only the few events that can carry usage.
//
// A Recorder takes finished calls (Record) into a bounded in-memory queue
// and writes them from one background goroutine, a batch at a time, in one
// pipeline of single-key commands (no MULTI, no Lua), so it works on Redis
// Cluster. When the queue is full, calls are dropped and counted
// (Dropped), never waited for. A batch's calls to the same hash field are
// added up first, and EXPIRE is sent once per key per hour (or
// Retention/4), so a busy gateway sends far fewer commands than it serves
// requests. Commands that fail for a reason that may pass (the network, a
// failover) are tried again every FlushInterval, and meanwhile no new
// records are taken, so the queue fills and drops rather than memory
// growing; a pipeline cut off midway may have applied commands whose
// replies were lost, which are then counted twice. Keys, all under
// Config.Prefix:
//
//	usage:day:{YYYY-MM-DD}:{email}  HASH, per model: req:{model}, in:{model},
//	                                out:{model}, cost:{model} (micro-USD),
//	                                unk:{model} (calls of unknown cost)
//	usage:users:{YYYY-MM-DD}        SET of the emails with usage that day
//	usage:token:{id}                HASH req, in, out, cost (micro-USD), unk,
//	                                last (unix ms of the newest call)
//	usage:spend:{YYYY-MM}           HASH email → spend in micro-USD that
//	                                month (calls of known cost)
//	usage:caps                      HASH email → monthly cap in micro-USD
//	                                set by an admin (no expiry)
//	usage:recent:{email}            LIST of recent calls (JSON), newest first,
//	                                capped at Config.RecentPerUser
//
// Days and months are UTC and taken from Record.Time. Every key but usage:caps expires
// Config.Retention after its last write, so a token's totals outlive the
// token (at most LLMGATE_TOKEN_MAX_TTL) as long as Retention is longer.
// The statistic name ends at the first ':' of a field and the email is the
// whole tail of a key, so models and emails containing ':' or '|' cannot
// collide. Costs are integers of micro-dollars (HINCRBY), so sums of many
// small amounts are exact.
//
// A Ledger (Recorder.Ledger) mirrors the month's spend hash and the caps in
// process, read every Config.SpendRefresh and merged with the totals the
// Recorder's own writes answer, so that a spend check costs no round trip.
// Prices prices a call from its usage when the upstream sends no cost.
//
// go-redis is used only in recorder.go, store.go and ledger.go.
package usage
