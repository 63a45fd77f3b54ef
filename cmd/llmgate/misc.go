package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"time"
)

// Stamped by the build: -ldflags "-X main.version=v1.2.3 -X main.commit=abc123".
var (
	version = "dev"
	commit  = ""
)

// newFlagSet makes a command's flag set that prints its usage to stderr
// and reports errors instead of exiting.
func newFlagSet(name, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("llmgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: llmgate %s [flags]\n\n%s\n", name, summary)
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintln(stderr, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args and maps the outcome to an exit code: -1 means go on.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return exitUsage
	}
	return -1
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "Print llmgate's version, commit and Go version.", stderr)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	c := commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	fmt.Fprintf(stdout, "llmgate %s (commit %s, %s, %s/%s)\n", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// newSecret returns 48 random bytes, base64url: 64 characters.
func newSecret() string {
	b := make([]byte, 48)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func cmdSecret(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("secret", "Print a fresh random secret (384 bits, base64url) for LLMGATE_SECRET.\n\nExample:\n  echo \"LLMGATE_SECRET=$(llmgate secret)\" >> .env", stderr)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	fmt.Fprintln(stdout, newSecret())
	return exitOK
}

func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("healthcheck", "Exit 0 when the gateway answers GET /healthz with 200, 1 otherwise.\nMeant for container HEALTHCHECK (the image has no curl).", stderr)
	def := "http://127.0.0.1:8080/healthz"
	if l := os.Getenv("LLMGATE_LISTEN"); l != "" {
		if _, port, err := net.SplitHostPort(l); err == nil && port != "" {
			def = "http://127.0.0.1:" + port + "/healthz"
		}
	}
	u := fs.String("url", def, "URL to check (default from LLMGATE_LISTEN's port)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *u, nil)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: bad --url: %v\n", err)
		return exitUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %s: %v\n", *u, err)
		return exitFailure
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: %s answered %s\n", *u, resp.Status)
		return exitFailure
	}
	fmt.Fprintln(stdout, "ok")
	return exitOK
}

// parseArgs parses flags wherever they appear among args (`token revoke ID
// --json` as well as `token revoke --json ID`) and returns the positional
// arguments, or an exit code >= 0 when parsing ends the command.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, int) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK
			}
			return nil, exitUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, -1
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), -1
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
