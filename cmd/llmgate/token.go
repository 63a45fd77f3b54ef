package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/llmgate/llmgate/gateway"
)

const tokenUsage = `Usage: llmgate token <create|list|revoke> [flags]

Manage your API tokens with the credential of 'llmgate login' (or LLMGATE_TOKEN).

Commands:
  create --name N   mint a token; prints it once (on stdout), the details on stderr
  list              your tokens, newest first
  revoke ID...      revoke tokens by id (as 'list' shows them)

Every command takes --server URL and --json. Run 'llmgate token <command> --help' for its flags.

Examples:
  llmgate token create --name "roo code" --ttl 30d --models claude-sonnet-4-6
  TOKEN=$(llmgate token create --name ci --ttl 1d)
  llmgate token create --name ci --json | jq -r .token
  llmgate token list
  llmgate token revoke 3f2a9c…
`

func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenUsage)
		return exitUsage
	}
	switch args[0] {
	case "create":
		return cmdTokenCreate(ctx, args[1:], stdout, stderr)
	case "list", "ls":
		return cmdTokenList(ctx, args[1:], stdout, stderr)
	case "revoke", "rm":
		return cmdTokenRevoke(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, tokenUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "llmgate token: unknown command %q\n\n%s", args[0], tokenUsage)
		return exitUsage
	}
}

// createRequest is the body of POST /api/tokens.
type createRequest struct {
	Name       string   `json:"name"`
	TTL        string   `json:"ttl,omitempty"`
	Models     []string `json:"models,omitempty"`
	RPM        int      `json:"rpm,omitempty"`
	CIDRs      []string `json:"cidrs,omitempty"`
	MaxCostUSD float64  `json:"max_cost_usd,omitempty"`
}

// splitList reads "a, b,c" as [a b c].
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

const tokenCreateSummary = `Mint an API token for an IDE plugin, SDK or script. It may call the LLM API
only (scope llm). The token is printed once, alone on stdout, so it can be
captured; the details go to stderr. The gateway keeps only its metadata.

Examples:
  llmgate token create --name "roo code"
  llmgate token create --name ci --ttl 1d --models gpt-4o-mini,claude-haiku-4-5 --rpm 60
  TOKEN=$(llmgate token create --name ci --ttl 12h)
  llmgate token create --name ci --json | jq -r .token`

func cmdTokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr)
	fs := newFlagSet("token create", tokenCreateSummary, stderr)
	server := fs.String("server", "", "gateway URL (default: LLMGATE_SERVER, else the one you signed in to)")
	name := fs.String("name", "", "the token's name, shown in lists (required)")
	ttl := fs.String("ttl", "", "lifetime, like 30d, 12h or 90m (default: the gateway's, usually 30d)")
	models := fs.String("models", "", "comma-separated models the token may call (default: any)")
	rpm := fs.Int("rpm", 0, "requests per minute allowed to this token (0: the gateway's default)")
	cidrs := fs.String("cidrs", "", "comma-separated networks the token may be used from, like 10.0.0.0/8")
	maxCost := fs.Float64("max-cost", 0, "lifetime spend cap in USD (0: none)")
	asJSON := fs.Bool("json", false, "print the gateway's answer as JSON (includes the token)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if strings.TrimSpace(*name) == "" {
		fmt.Fprintln(stderr, "llmgate token create: --name is required, e.g. --name \"roo code\"")
		return exitUsage
	}
	a, err := c.resolve(*server)
	if err != nil {
		return c.fail("token create", err)
	}
	req := createRequest{Name: *name, TTL: *ttl, Models: splitList(*models), RPM: *rpm, CIDRs: splitList(*cidrs), MaxCostUSD: *maxCost}
	t, err := c.createToken(ctx, a, req)
	if err != nil {
		return c.fail("token create", err)
	}
	if *asJSON {
		return c.printJSON(t)
	}
	fmt.Fprintf(stderr, "Created token %q (id %s) for %s, expires %s. It is shown only once:\n",
		t.Name, t.ID, t.Email, formatTime(t.ExpiresAt))
	fmt.Fprintln(stdout, t.Token)
	return exitOK
}

func (c *cli) createToken(ctx context.Context, a *auth, req createRequest) (*gateway.TokenView, error) {
	var t gateway.TokenView
	if err := c.call(ctx, a, http.MethodPost, "/api/tokens", req, &t); err != nil {
		return nil, err
	}
	if t.Token == "" {
		return nil, fmt.Errorf("%s created token %s but sent no token string back", a.server, t.ID)
	}
	return &t, nil
}

const tokenListSummary = `List your tokens: id, name, where it was minted, allowed models, dates and
status. The token strings themselves are never shown again.

Examples:
  llmgate token list
  llmgate token list --json | jq -r '.[] | select(.status == "active") | .id'`

func cmdTokenList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr)
	fs := newFlagSet("token list", tokenListSummary, stderr)
	server := fs.String("server", "", "gateway URL (default: LLMGATE_SERVER, else the one you signed in to)")
	asJSON := fs.Bool("json", false, "print a JSON array for scripts")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	a, err := c.resolve(*server)
	if err != nil {
		return c.fail("token list", err)
	}
	var list struct {
		Tokens []gateway.TokenView `json:"tokens"`
	}
	if err := c.call(ctx, a, http.MethodGet, "/api/tokens", nil, &list); err != nil {
		return c.fail("token list", err)
	}
	if list.Tokens == nil {
		list.Tokens = []gateway.TokenView{}
	}
	sort.SliceStable(list.Tokens, func(i, j int) bool { return list.Tokens[i].CreatedAt.After(list.Tokens[j].CreatedAt) })
	if *asJSON {
		return c.printJSON(list.Tokens)
	}
	if len(list.Tokens) == 0 {
		fmt.Fprintln(stderr, "No tokens yet. Create one with: llmgate token create --name NAME")
		return exitOK
	}
	current := ""
	if a.cred != nil {
		current = a.cred.TokenID
	}
	now := c.now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tCLIENT\tMODELS\tCREATED\tEXPIRES\tLAST USED\tSTATUS")
	for _, t := range list.Tokens {
		models := "any"
		if len(t.Models) > 0 {
			models = strings.Join(t.Models, ",")
		}
		last := "never"
		if t.LastUsedAt != nil {
			last = relative(now, *t.LastUsedAt)
		}
		status := t.Status
		if t.ID == current && current != "" {
			status += " (this CLI)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, cell(t.Name), t.ClientID, models,
			t.CreatedAt.Local().Format("2006-01-02"), t.ExpiresAt.Local().Format("2006-01-02"), last, status)
	}
	tw.Flush()
	return exitOK
}

// cell keeps a table cell on one line and one column.
func cell(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	return s
}

const tokenRevokeSummary = `Revoke tokens by id (see 'llmgate token list'). A revoked token stops
working on every replica of the gateway within a second.

Examples:
  llmgate token revoke 3f2a9c0e8d1b4a7f9e2c5d8b1a4f7e0c
  llmgate token list --json | jq -r '.[] | select(.name == "ci") | .id' | xargs llmgate token revoke`

func cmdTokenRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr)
	fs := newFlagSet("token revoke", tokenRevokeSummary+"\n\nUsage: llmgate token revoke [flags] ID...", stderr)
	server := fs.String("server", "", "gateway URL (default: LLMGATE_SERVER, else the one you signed in to)")
	asJSON := fs.Bool("json", false, "print the revoked tokens as a JSON array")
	ids, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(ids) == 0 {
		fmt.Fprintln(stderr, "llmgate token revoke: name at least one token id (see 'llmgate token list')")
		return exitUsage
	}
	a, err := c.resolve(*server)
	if err != nil {
		return c.fail("token revoke", err)
	}
	var revoked []gateway.TokenView
	failed := false
	for _, id := range ids {
		var t gateway.TokenView
		err := c.call(ctx, a, http.MethodDelete, "/api/tokens/"+url.PathEscape(id), nil, &t)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			err = fmt.Errorf("%s: no token of yours has the id %q (see 'llmgate token list')", a.server, id)
		}
		if err != nil {
			fmt.Fprintf(stderr, "llmgate token revoke: %v\n", err)
			failed = true
			continue
		}
		revoked = append(revoked, t)
		if !*asJSON {
			fmt.Fprintf(stdout, "Revoked %q (id %s).\n", t.Name, t.ID)
		}
		if a.cred != nil && t.ID == a.cred.TokenID {
			fmt.Fprintf(stderr, "That was this CLI's own credential; run '%s' to sign in again.\n", loginHint(a.server))
		}
	}
	if *asJSON {
		if revoked == nil {
			revoked = []gateway.TokenView{}
		}
		c.printJSON(revoked)
	}
	if failed {
		return exitFailure
	}
	return exitOK
}
