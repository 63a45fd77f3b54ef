// Package ui holds llmgate's server-rendered pages: html/template pages as
// typed structs, and the static assets they use, embedded in the binary.
// Pages contain no inline script, so the gateway can serve them under a
// strict Content-Security-Policy.
package ui
