// Package demoupstream is the demo LLM upstream that `llmgate dev` runs and
// that tests and benchmarks of the proxy use: a fast, deterministic imitation
// of an OpenAI- and Anthropic-compatible server such as LiteLLM.
//
// It answers the routes real clients call (the official openai and
// @anthropic-ai/sdk SDKs, Claude Code): GET /v1/models,
// POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages
// and /v1/messages/count_tokens, JSON or server-sent events, with usage in
// each family's shape and errors in each family's envelope. Its reply names
// the identity the gateway attached and quotes the question, so a person
// trying `llmgate dev` sees that the call went through the gateway as them.
//
// Nothing is random: token counts follow the request text (input ≈ bytes / 4)
// and the reply (output = its words), ids count up per Server, and embedding
// vectors are derived from the input. A Server records the requests it got
// (the last 1000) so tests can check what the gateway forwarded.
package demoupstream
