package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Client-side variables: they override the stored credential, the way
// GH_TOKEN and GH_HOST do for gh.
const (
	envToken  = "LLMGATE_TOKEN"
	envServer = "LLMGATE_SERVER"
)

// credential is what `llmgate login` stores for one gateway.
type credential struct {
	Token     string    `json:"token"`
	TokenID   string    `json:"token_id,omitempty"`
	Email     string    `json:"email,omitempty"`
	Scope     string    `json:"scope,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// credentialsFile is credentials.json: one credential per gateway, keyed by
// its normalized URL, and the one commands use when no --server is given.
type credentialsFile struct {
	Default string                 `json:"default,omitempty"`
	Servers map[string]*credential `json:"servers"`
}

// credentialsPath is $XDG_CONFIG_HOME/llmgate/credentials.json, with
// XDG_CONFIG_HOME defaulting to ~/.config (%AppData% on Windows).
func credentialsPath(getenv func(string) string) (string, error) {
	dir := getenv("XDG_CONFIG_HOME")
	if dir != "" && !filepath.IsAbs(dir) {
		dir = "" // the XDG spec: relative values are ignored
	}
	if dir == "" && runtime.GOOS == "windows" {
		dir = getenv("AppData")
	}
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			h, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("find the credentials file: neither XDG_CONFIG_HOME nor HOME is set")
			}
			home = h
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "llmgate", "credentials.json"), nil
}

// loadCredentials reads the credentials file; a missing file is empty.
func loadCredentials(path string) (*credentialsFile, error) {
	f := &credentialsFile{Servers: map[string]*credential{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("read credentials: %s is not valid JSON (%v): delete it and run 'llmgate login' again", path, err)
	}
	if f.Servers == nil {
		f.Servers = map[string]*credential{}
	}
	return f, nil
}

// saveCredentials writes f to path atomically: directory 0700, file 0600,
// whatever the umask, so no other user of the machine can read a token.
func saveCredentials(path string, f *credentialsFile) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".credentials-*.json")
	if err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save credentials: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	return nil
}

// looseModeWarning says so when others may read the credentials file.
func looseModeWarning(path string) string {
	if runtime.GOOS == "windows" {
		return ""
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("warning: %s is readable by other users (mode %04o); run: chmod 600 %s", path, st.Mode().Perm(), path)
}

// normalizeServer turns what a person typed into the gateway's base URL:
// https:// when no scheme is given, no trailing slash, no query.
func normalizeServer(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", errors.New("the server URL is empty")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q: the scheme must be https (or http for a gateway on this machine)", raw)
	}
	if u.Host == "" || u.User != nil {
		return "", fmt.Errorf("%q is not a gateway URL like https://llm.example.com", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q: give the gateway's base URL, without ?query or #fragment", raw)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// serverNames lists the stored servers, sorted.
func (f *credentialsFile) serverNames() []string {
	names := make([]string, 0, len(f.Servers))
	for s := range f.Servers {
		names = append(names, s)
	}
	sort.Strings(names)
	return names
}
