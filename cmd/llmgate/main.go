// Command llmgate is the sidecar auth gateway for LLM proxies: company SSO
// in the browser, long-lived API tokens for IDE tools and CLIs, and a
// verified, streaming reverse proxy that tells the upstream who called.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes (SPEC §1).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usageText = `llmgate — SSO and API tokens in front of your LLM proxy.

Usage:
  llmgate <command> [flags]

Using a gateway:
  login        sign in (browser, or --device for a code) and store a credential
  logout       revoke the stored credential and delete it
  whoami       who the credential belongs to, its scopes and expiry (checked live)
  token        create, list and revoke your API tokens
  env          exports or config for SDKs and IDE tools (openai, anthropic, claude-code, roo, continue, cline)

Running a gateway:
  serve        run the gateway (configured by LLMGATE_* variables, flags or --config FILE)
  dev          run everything on this machine: embedded store, demo identity provider, demo upstream
  secret       print a fresh random value for LLMGATE_SECRET
  healthcheck  exit 0 when the gateway answers /healthz (for container health checks)
  version      print version, commit and Go version

Run 'llmgate <command> --help' for a command's flags and examples.
LLMGATE_SERVER and LLMGATE_TOKEN override the stored gateway and credential.
Exit codes: 0 ok, 1 failure, 2 usage or configuration error.

Examples:
  llmgate login --server https://llm.example.com
  llmgate token create --name "roo code" --ttl 30d
  eval "$(llmgate env --client claude-code)"
  llmgate dev                         # try it: open the printed gateway URL, sign in as alice
  LLMGATE_SECRET=$(llmgate secret) llmgate serve --config /etc/llmgate.yaml
`

// run dispatches a command and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "dev":
		return cmdDev(ctx, rest, stdout, stderr)
	case "secret":
		return cmdSecret(rest, stdout, stderr)
	case "healthcheck":
		return cmdHealthcheck(ctx, rest, stdout, stderr)
	case "version":
		return cmdVersion(rest, stdout, stderr)
	case "login":
		return cmdLogin(ctx, rest, stdout, stderr)
	case "logout":
		return cmdLogout(ctx, rest, stdout, stderr)
	case "whoami":
		return cmdWhoami(ctx, rest, stdout, stderr)
	case "token", "tokens":
		return cmdToken(ctx, rest, stdout, stderr)
	case "env":
		return cmdEnv(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "llmgate: unknown command %q\n\n%s", cmd, usageText)
		return exitUsage
	}
}
